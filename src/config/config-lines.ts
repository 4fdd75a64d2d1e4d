import { InvalidConfigError } from '../errors.js';

/** `key = value` lines with `#` comments (pure, no dependencies: the libvirt hook reads it on every event). */
export interface ConfigLines {
  values: Record<string, string>;
  lineOf: Record<string, number>;
}

export function readConfigLines(text: string, file: string): ConfigLines {
  const values: Record<string, string> = {};
  const lineOf: Record<string, number> = {};
  text.split('\n').forEach((raw, index) => {
    const line = raw.replace(/#.*$/, '').trim();
    if (!line) return;
    const match = /^([a-z][a-z-]*)\s*=\s*(.*)$/.exec(line);
    if (!match) throw new InvalidConfigError(`${file}:${index + 1}: expected 'key = value', found '${raw.trim()}'`);
    const [, key, value] = match as unknown as [string, string, string];
    if (key in values) throw new InvalidConfigError(`${file}:${index + 1}: '${key}' is already set on line ${lineOf[key]}`);
    values[key] = value.trim();
    lineOf[key] = index + 1;
  });
  return { values, lineOf };
}
