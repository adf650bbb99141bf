#!/usr/bin/env node
/**
 * Translations of the frontend's strings, without extra tools.
 *
 *   node scripts/i18n.mjs update   extract the strings of src/ into the .pot template
 *                                  and add new ones (untranslated) to every .po
 *   node scripts/i18n.mjs check    fail if a string of src/ has no translation
 *   node scripts/i18n.mjs compile  .po -> the JSON (Jed format) that JupyterLab loads
 *
 * Layout (what jupyterlab_server expects of a package that declares a
 * `jupyterlab.locale` entry point named after its domain):
 *   jupyter_copilot/locale/jupyter_copilot.pot
 *   jupyter_copilot/locale/<lang>/LC_MESSAGES/jupyter_copilot.po    (source)
 *   jupyter_copilot/locale/<lang>/LC_MESSAGES/jupyter_copilot.json  (compiled)
 */

import { readdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const LABEXTENSION = join(HERE, '..');
const SRC = join(LABEXTENSION, 'src');
const DOMAIN = 'jupyter_copilot';
const LOCALE_DIR = join(LABEXTENSION, '..', 'jupyter_copilot', 'locale');
const POT = join(LOCALE_DIR, `${DOMAIN}.pot`);
const VERSION = JSON.parse(readFileSync(join(LABEXTENSION, 'package.json'), 'utf8')).version;

/* ------------------------------------------------------------------ extract */

const LITERAL = String.raw`('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")`;
const CALLS = [
  // trans.__('text', …)
  { re: new RegExp(String.raw`\b_?trans\.__\(\s*${LITERAL}`, 'g'), kind: 'singular' },
  // trans._n('one', 'many', n)
  {
    re: new RegExp(String.raw`\b_?trans\._n\(\s*${LITERAL}\s*,\s*${LITERAL}`, 'g'),
    kind: 'plural'
  },
  // trans._p('context', 'text')
  {
    re: new RegExp(String.raw`\b_?trans\._p\(\s*${LITERAL}\s*,\s*${LITERAL}`, 'g'),
    kind: 'context'
  }
];

function unquote(literal) {
  // A string literal of our own source: let JavaScript read it (escapes and all).
  return new Function(`return ${literal};`)();
}

/**
 * The TypeScript files under src/, subfolders included, as paths relative to src/
 * (with '/', so that the references in the .po files are the same on every system).
 */
function sourceFiles(dir = SRC, prefix = '') {
  const files = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.isDirectory()) {
      files.push(...sourceFiles(join(dir, entry.name), `${prefix}${entry.name}/`));
    } else if (entry.name.endsWith('.ts')) {
      files.push(prefix + entry.name);
    }
  }
  return files.sort();
}

function extract() {
  const messages = new Map();
  for (const file of sourceFiles()) {
    const text = readFileSync(join(SRC, file), 'utf8');
    for (const { re, kind } of CALLS) {
      for (const match of text.matchAll(re)) {
        const line = text.slice(0, match.index).split('\n').length;
        let entry;
        if (kind === 'singular') {
          entry = { msgid: unquote(match[1]) };
        } else if (kind === 'plural') {
          entry = { msgid: unquote(match[1]), msgid_plural: unquote(match[2]) };
        } else {
          entry = { msgctxt: unquote(match[1]), msgid: unquote(match[2]) };
        }
        const key = keyOf(entry);
        const known = messages.get(key) ?? { ...entry, refs: [] };
        known.refs.push(`src/${file}:${line}`);
        messages.set(key, known);
      }
    }
  }
  extractSchemas(messages);
  return messages;
}

/**
 * The titles and descriptions of the settings schemas that the frontend translates
 * (those with `jupyter.lab.transform`: src/schemaI18n.ts), with the context `schema`.
 */
function extractSchemas(messages) {
  const SCHEMA_DIR = join(LABEXTENSION, 'schema');
  for (const file of readdirSync(SCHEMA_DIR)
    .filter(f => f.endsWith('.json'))
    .sort()) {
    const schema = JSON.parse(readFileSync(join(SCHEMA_DIR, file), 'utf8'));
    if (!schema['jupyter.lab.transform']) {
      continue;
    }
    const visit = (node, path) => {
      for (const key of ['title', 'description']) {
        if (typeof node[key] === 'string' && node[key]) {
          const entry = { msgctxt: 'schema', msgid: node[key] };
          const known = messages.get(keyOf(entry)) ?? { ...entry, refs: [] };
          known.refs.push(`schema/${file}:${path}${key}`);
          messages.set(keyOf(entry), known);
        }
      }
      for (const [name, property] of Object.entries(node.properties ?? {})) {
        visit(property, `${path}properties/${name}/`);
      }
    };
    visit(schema, '/');
  }
}

function keyOf(entry) {
  return (entry.msgctxt ? entry.msgctxt + '\u0004' : '') + entry.msgid;
}

/* ----------------------------------------------------------------- PO files */

function parsePo(text) {
  const entries = [];
  let entry = null;
  let field = null;
  const flush = () => {
    if (entry && entry.msgid !== undefined) {
      entries.push(entry);
    }
    entry = null;
    field = null;
  };
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line) {
      flush();
      continue;
    }
    if (line.startsWith('#')) {
      if (entry && entry.msgid !== undefined) {
        flush();
      }
      entry = entry ?? { comments: [] };
      entry.comments.push(raw);
      continue;
    }
    const keyword = line.match(/^(msgctxt|msgid_plural|msgid|msgstr(?:\[(\d+)\])?)\s+(".*")$/);
    if (keyword) {
      entry = entry ?? { comments: [] };
      if (keyword[1] === 'msgid' && entry.msgid !== undefined) {
        flush();
        entry = { comments: [] };
      }
      field = keyword[1];
      const value = JSON.parse(keyword[3]);
      if (field.startsWith('msgstr[')) {
        entry.msgstr_plural = entry.msgstr_plural ?? [];
        entry.msgstr_plural[Number(keyword[2])] = value;
      } else {
        entry[field] = value;
      }
      continue;
    }
    if (line.startsWith('"') && entry && field) {
      const value = JSON.parse(line);
      if (field.startsWith('msgstr[')) {
        const index = Number(field.slice(7, -1));
        entry.msgstr_plural[index] += value;
      } else {
        entry[field] += value;
      }
      continue;
    }
    throw new Error(`cannot parse PO line: ${raw}`);
  }
  flush();
  return entries;
}

function headerOf(entries) {
  const header = entries.find(e => e.msgid === '' && !e.msgctxt);
  const fields = {};
  for (const line of (header?.msgstr ?? '').split('\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) {
      fields[line.slice(0, colon).trim()] = line.slice(colon + 1).trim();
    }
  }
  return fields;
}

function quote(value) {
  const escaped = JSON.stringify(value);
  if (!value.includes('\n') || value === '\n') {
    return escaped;
  }
  // Multi-line strings: one PO line per source line, as gettext tools write them.
  const parts = value.split(/(?<=\n)/).map(part => JSON.stringify(part));
  return '""\n' + parts.join('\n');
}

function formatEntry(entry, { template }) {
  const lines = [];
  for (const comment of entry.comments ?? []) {
    if (!comment.startsWith('#:')) {
      lines.push(comment);
    }
  }
  for (const ref of entry.refs ?? []) {
    lines.push(`#: ${ref}`);
  }
  if (entry.msgctxt) {
    lines.push(`msgctxt ${quote(entry.msgctxt)}`);
  }
  lines.push(`msgid ${quote(entry.msgid)}`);
  if (entry.msgid_plural !== undefined) {
    lines.push(`msgid_plural ${quote(entry.msgid_plural)}`);
    const forms = template ? ['', ''] : (entry.msgstr_plural ?? ['', '']);
    forms.forEach((form, i) => lines.push(`msgstr[${i}] ${quote(form ?? '')}`));
  } else {
    lines.push(`msgstr ${quote(template ? '' : (entry.msgstr ?? ''))}`);
  }
  return lines.join('\n');
}

function poFiles() {
  if (!existsSync(LOCALE_DIR)) {
    return [];
  }
  return readdirSync(LOCALE_DIR, { withFileTypes: true })
    .filter(d => d.isDirectory())
    .map(d => ({
      locale: d.name,
      po: join(LOCALE_DIR, d.name, 'LC_MESSAGES', `${DOMAIN}.po`),
      json: join(LOCALE_DIR, d.name, 'LC_MESSAGES', `${DOMAIN}.json`)
    }))
    .filter(f => existsSync(f.po));
}

/* ----------------------------------------------------------------- commands */

function update() {
  const messages = extract();
  const potHeader = [
    '# Strings of the jupyter-copilot JupyterLab extension.',
    '# Generated by labextension/scripts/i18n.mjs update; do not edit.',
    'msgid ""',
    'msgstr ""',
    `"Project-Id-Version: jupyter-copilot ${VERSION}\\n"`,
    '"MIME-Version: 1.0\\n"',
    '"Content-Type: text/plain; charset=UTF-8\\n"',
    '"Content-Transfer-Encoding: 8bit\\n"'
  ].join('\n');
  const body = [...messages.values()].map(e => formatEntry(e, { template: true }));
  writeFileSync(POT, [potHeader, ...body].join('\n\n') + '\n');
  console.log(`${POT}: ${messages.size} strings`);

  for (const { po, locale } of poFiles()) {
    const entries = parsePo(readFileSync(po, 'utf8'));
    const header = entries.find(e => e.msgid === '' && !e.msgctxt);
    const byKey = new Map(entries.filter(e => e !== header).map(e => [keyOf(e), e]));
    const out = [formatEntry({ ...header, refs: [] }, { template: false })];
    let missing = 0;
    for (const [key, message] of messages) {
      const known = byKey.get(key);
      const merged = { ...message, ...(known ?? {}), refs: message.refs };
      if (!known) {
        missing++;
      }
      out.push(formatEntry(merged, { template: false }));
      byKey.delete(key);
    }
    writeFileSync(po, out.join('\n\n') + '\n');
    const dropped = byKey.size ? `, ${byKey.size} obsolete dropped` : '';
    console.log(`${po}: ${missing} new untranslated${dropped} (${locale})`);
  }
}

function check() {
  const messages = extract();
  let problems = 0;
  for (const { po, locale } of poFiles()) {
    const entries = new Map(parsePo(readFileSync(po, 'utf8')).map(e => [keyOf(e), e]));
    for (const [key, message] of messages) {
      const entry = entries.get(key);
      const translated =
        entry &&
        (entry.msgid_plural !== undefined
          ? (entry.msgstr_plural ?? []).length >= 2 && entry.msgstr_plural.every(Boolean)
          : !!entry.msgstr);
      if (!translated) {
        problems++;
        console.error(
          `${locale}: no translation for ${JSON.stringify(message.msgid)} (${message.refs[0]})`
        );
      }
      // Placeholders must survive translation, or the UI shows "%1".
      const placeholders = s => (s.match(/%\d/g) ?? []).sort().join();
      const translation = entry?.msgstr ?? entry?.msgstr_plural?.[0] ?? '';
      if (translated && placeholders(translation) !== placeholders(message.msgid)) {
        problems++;
        console.error(`${locale}: placeholders differ in ${JSON.stringify(message.msgid)}`);
      }
    }
  }
  if (problems) {
    console.error(
      `${problems} translation problem(s); run "node scripts/i18n.mjs update" and translate.`
    );
    process.exit(1);
  }
  console.log(`translations complete: ${messages.size} strings, ${poFiles().length} language(s)`);
}

function compile() {
  for (const { po, json, locale } of poFiles()) {
    const entries = parsePo(readFileSync(po, 'utf8'));
    const header = headerOf(entries);
    // JupyterLab names locales with a dash (fr-FR) and looks messages up by that name.
    const language = (header.Language || locale).replace('_', '-');
    const data = {
      '': {
        domain: DOMAIN,
        language,
        plural_forms: header['Plural-Forms'] || 'nplurals=2; plural=(n != 1);',
        version: VERSION
      }
    };
    for (const entry of entries) {
      if (entry.msgid === '' && !entry.msgctxt) {
        continue;
      }
      const forms = entry.msgid_plural !== undefined ? entry.msgstr_plural : [entry.msgstr];
      if (!forms || !forms.every(Boolean)) {
        continue; // untranslated: JupyterLab falls back to the English msgid
      }
      data[keyOf(entry)] = forms;
    }
    writeFileSync(json, JSON.stringify(data, null, 1) + '\n');
    console.log(`${json}: ${Object.keys(data).length - 1} messages`);
  }
}

const command = process.argv[2];
const commands = { update, check, compile };
if (!commands[command]) {
  console.error('usage: node scripts/i18n.mjs update|check|compile');
  process.exit(2);
}
commands[command]();
