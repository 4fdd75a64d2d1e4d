/**
 * A memory buffer aligned to a page, as O_DIRECT needs (Buffer.alloc does not
 * promise any alignment). WebAssembly memory is mapped in whole pages and so
 * is page-aligned.
 */
const WASM_PAGE_BYTES = 65536;

export function alignedBuffer(bytes: number): Buffer {
  const memory = new WebAssembly.Memory({ initial: Math.max(1, Math.ceil(bytes / WASM_PAGE_BYTES)) });
  return Buffer.from(memory.buffer, 0, bytes);
}
