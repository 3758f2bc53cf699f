/** Thrown by the writers. Like ModelImportError, the message names the output path and the problem. */
export class ModelExportError extends Error {
  override readonly name = "ModelExportError";
  constructor(
    readonly file: string,
    readonly problem: string,
  ) {
    super(`${file}: ${problem}`);
  }
}
