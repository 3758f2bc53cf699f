// wrangler (its default Text rule) and esbuild (its text loader) import .txt files as strings.
declare module "*.txt" {
  const text: string;
  export default text;
}
