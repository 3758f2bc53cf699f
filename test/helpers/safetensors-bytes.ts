/** Reads and rewrites raw safetensors files, to craft headers that lie. */
import { readFileSync, writeFileSync } from "node:fs";

export type RawHeader = Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;

export function readRawSafetensors(path: string): { header: RawHeader; data: Uint8Array } {
  const bytes = readFileSync(path);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString("utf8")) as RawHeader;
  return { header, data: new Uint8Array(bytes.subarray(8 + n)) };
}

/** Writes header + data; `headerLength` overrides the length field (to make it lie). */
export function writeRawSafetensors(
  path: string,
  header: object,
  data: Uint8Array,
  headerLength?: number,
): void {
  const json = Buffer.from(JSON.stringify(header), "utf8");
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(headerLength ?? json.length));
  writeFileSync(path, Buffer.concat([prefix, json, data]));
}

/** Applies `edit` to the header of `path` in place (the data section is kept as is). */
export function editSafetensorsHeader(path: string, edit: (header: RawHeader) => void): void {
  const { header, data } = readRawSafetensors(path);
  edit(header);
  writeRawSafetensors(path, header, data);
}
