import { parseSize } from '../util/sizes.js';

/**
 * The tideline policy element as `virsh metadata` prints it, read without an
 * XML library (pure). `tideline policy show` runs often enough, from scripts
 * and by hand, that loading fast-xml-parser and zod (about 150 ms here) would
 * be most of its time. This reader takes only the plain form libvirt writes
 * back: one <thin> element, <drive> children, quoted attributes without
 * entities. Anything else, well-formed or not, it declines (undefined) and the
 * full parser in domain-xml.ts decides, so both give the same answer and the
 * full parser alone words the errors.
 */
export const TIDELINE_NAMESPACE = 'https://tideline.dev/xmlns/policy/1';

export interface DiskPolicy {
  enabled?: boolean;
  chunk?: number;
  freeTarget?: number;
  maxSize?: number;
}

export interface DomainPolicy {
  vm: DiskPolicy;
  disks: Record<string, DiskPolicy>;
}

interface PlainElement {
  name: string;
  attributes: Map<string, string>;
  children: PlainElement[];
}

const NAME = /[A-Za-z_][A-Za-z0-9._-]*/y;
const ATTRIBUTE_NAME = /[A-Za-z_][A-Za-z0-9._:-]*/y;
const WHITESPACE = /[ \t\r\n]*/y;
const QUOTED = /"([^"<&]*)"|'([^'<&]*)'/y;

class Declined extends Error {}

/** The policy, or undefined when the text is not in the plain form (then ask `parsePolicyXml`). */
export function readPlainPolicy(xml: string): DomainPolicy | undefined {
  if (!xml.trim()) return { vm: {}, disks: {} };
  try {
    const cursor = { text: xml, at: 0 };
    skipWhitespace(cursor);
    const root = readElement(cursor, 0);
    skipWhitespace(cursor);
    if (cursor.at !== xml.length || root.name !== 'thin') return undefined;
    const policy: DomainPolicy = { vm: toPolicy(root), disks: {} };
    for (const drive of root.children) {
      const target = drive.attributes.get('target');
      if (drive.name !== 'drive' || drive.children.length > 0 || target === undefined) return undefined;
      policy.disks[target] = toPolicy(drive);
    }
    return policy;
  } catch (error) {
    if (error instanceof Declined) return undefined;
    throw error;
  }
}

function toPolicy(element: PlainElement): DiskPolicy {
  const enabled = element.attributes.get('enabled');
  if (enabled !== undefined && enabled !== 'yes' && enabled !== 'no') throw new Declined();
  const size = (name: string) => {
    const text = element.attributes.get(name);
    if (text === undefined) return undefined;
    try {
      return parseSize(text, name);
    } catch {
      throw new Declined();
    }
  };
  const chunk = size('chunk');
  const freeTarget = size('free-target');
  const maxSize = size('max-size');
  return {
    ...(enabled === undefined ? {} : { enabled: enabled === 'yes' }),
    ...(chunk === undefined ? {} : { chunk }),
    ...(freeTarget === undefined ? {} : { freeTarget }),
    ...(maxSize === undefined ? {} : { maxSize }),
  };
}

interface Cursor {
  text: string;
  at: number;
}

function readElement(cursor: Cursor, depth: number): PlainElement {
  // The policy is two levels deep; deeper nesting is not the plain form.
  if (depth > 1) throw new Declined();
  expect(cursor, '<');
  const name = match(cursor, NAME);
  const attributes = new Map<string, string>();
  for (;;) {
    const before = cursor.at;
    skipWhitespace(cursor);
    if (cursor.text.startsWith('/>', cursor.at)) {
      cursor.at += 2;
      return { name, attributes, children: [] };
    }
    if (cursor.text.startsWith('>', cursor.at)) {
      cursor.at += 1;
      break;
    }
    if (cursor.at === before) throw new Declined();
    const attribute = match(cursor, ATTRIBUTE_NAME);
    if (attribute.includes(':') && !attribute.startsWith('xmlns:')) throw new Declined();
    skipWhitespace(cursor);
    expect(cursor, '=');
    skipWhitespace(cursor);
    QUOTED.lastIndex = cursor.at;
    const quoted = QUOTED.exec(cursor.text);
    if (!quoted) throw new Declined();
    cursor.at = QUOTED.lastIndex;
    const value = quoted[1] ?? quoted[2] ?? '';
    // The full parser trims values; a value that trimming would change is left to it.
    if (attributes.has(attribute) || value !== value.trim()) throw new Declined();
    attributes.set(attribute, value);
  }
  const children: PlainElement[] = [];
  for (;;) {
    skipWhitespace(cursor);
    if (cursor.text.startsWith('</', cursor.at)) break;
    children.push(readElement(cursor, depth + 1));
  }
  cursor.at += 2;
  if (match(cursor, NAME) !== name) throw new Declined();
  skipWhitespace(cursor);
  expect(cursor, '>');
  return { name, attributes, children };
}

function match(cursor: Cursor, pattern: RegExp): string {
  pattern.lastIndex = cursor.at;
  const found = pattern.exec(cursor.text);
  if (!found || found[0] === '') throw new Declined();
  cursor.at = pattern.lastIndex;
  return found[0];
}

function skipWhitespace(cursor: Cursor): void {
  WHITESPACE.lastIndex = cursor.at;
  WHITESPACE.exec(cursor.text);
  cursor.at = WHITESPACE.lastIndex;
}

function expect(cursor: Cursor, literal: string): void {
  if (!cursor.text.startsWith(literal, cursor.at)) throw new Declined();
  cursor.at += literal.length;
}
