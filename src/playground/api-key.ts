/**
 * Where the page keeps the API key it sends as `Authorization: Bearer <key>`: sessionStorage (this
 * tab, until it closes) by default, localStorage when the user asks to remember it on this device.
 * Storage can be unavailable (privacy modes throw on access); then the key lives in memory only.
 */
const STORAGE_KEY = "shardlm.apiKey";

export interface KeyStore {
  get(): string | null;
  set(key: string, remember: boolean): void;
  clear(): void;
  /** Where the current key lives. */
  where(): "this device" | "this tab" | null;
}

function storage(kind: "local" | "session"): Storage | null {
  try {
    return kind === "local" ? window.localStorage : window.sessionStorage;
  } catch {
    return null;
  }
}

export function browserKeyStore(): KeyStore {
  let memory: string | null = null;
  const read = (kind: "local" | "session") => {
    try {
      return storage(kind)?.getItem(STORAGE_KEY) ?? null;
    } catch {
      return null;
    }
  };
  const write = (kind: "local" | "session", value: string | null) => {
    try {
      const s = storage(kind);
      if (value === null) s?.removeItem(STORAGE_KEY);
      else s?.setItem(STORAGE_KEY, value);
      return !!s;
    } catch {
      return false;
    }
  };
  return {
    get: () => read("session") ?? read("local") ?? memory,
    set(key, remember) {
      this.clear();
      if (!write(remember ? "local" : "session", key)) memory = key;
    },
    clear() {
      memory = null;
      write("session", null);
      write("local", null);
    },
    where: () => (read("session") ? "this tab" : read("local") ? "this device" : memory ? "this tab" : null),
  };
}
