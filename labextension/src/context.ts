/**
 * From an editor in JupyterLab to a completion request: what is around the cursor,
 * which earlier cells the model may read, which language, which editor.
 *
 * Nothing here talks to the network; `provider.ts` sends what this builds, and
 * only to the Jupyter server.
 */

import { Text } from '@jupyterlab/coreutils';
import type { IDocumentWidget } from '@jupyterlab/docregistry';
import { FileEditor } from '@jupyterlab/fileeditor';
import { NotebookPanel } from '@jupyterlab/notebook';
import { UUID } from '@lumino/coreutils';
import type { Widget } from '@lumino/widgets';

import type { CellType, ICompleteRequest, IContextCell } from './api';
import { kernelNamespace } from './kernel/namespace';

/**
 * Limits that keep a request well within the server's (schema.py: 100 000
 * characters per text, 500 context cells, 512 KiB per body). The server keeps a
 * token budget of about 1 500 tokens of context anyway: sending a whole thesis-sized
 * notebook on every keystroke would only cost bandwidth and JSON parsing.
 */
export const MAX_CONTEXT_CELLS = 200;
export const MAX_CONTEXT_CHARS = 48_000;
export const MAX_PREFIX_CHARS = 24_000;
export const MAX_SUFFIX_CHARS = 4_000;
const MAX_SOURCE_CHARS = 100_000;

/**
 * A random id for this browser tab, so that two tabs open on the same notebook do
 * not cancel each other's requests on the server.
 */
const TAB_ID = UUID.uuid4().slice(0, 8);

/**
 * Where a completion is requested: the request minus what the settings decide.
 */
export type EditorRequest = Omit<ICompleteRequest, 'mode' | 'max_tokens' | 'request_id'>;

export interface IBuildOptions {
  /** Also complete in markdown cells. */
  markdownCells: boolean;
  /** Explicitly invoked by the user (Alt+\), as opposed to typing. */
  invoked: boolean;
}

/**
 * Build the request for the widget the inline completer runs in, or null when no
 * request should be sent (unsupported widget, markdown cell, blank cell…).
 *
 * @param text - the active editor's whole text
 * @param offset - the cursor, in characters (code points) as JupyterLab gives it
 */
export function buildCompletionRequest(
  widget: Widget,
  text: string,
  offset: number,
  options: IBuildOptions
): EditorRequest | null {
  // JupyterLab counts the cursor in code points; JavaScript strings index UTF-16
  // units. They differ as soon as the cell holds an emoji or another astral character.
  const cursor = Text.charIndexToJsIndex(offset, text);
  const prefix = text.slice(0, cursor);
  const suffix = text.slice(cursor);
  if (!text.trim() && !options.invoked) {
    // Nothing typed yet: nothing to continue, and no reason to wake the engine.
    return null;
  }
  if (widget instanceof NotebookPanel) {
    return notebookRequest(widget, prefix, suffix, options);
  }
  if (isFileEditorWidget(widget)) {
    const path = widget.context.path;
    const language = languageOf(widget.content.model.mimeType, path);
    if (!language || !text.trim()) {
      return null;
    }
    return {
      ...clipped(prefix, suffix),
      language,
      path,
      cell_id: null,
      context_cells: [],
      editor_id: editorId(path, widget.id)
    };
  }
  // Consoles and other editors: not supported (yet).
  return null;
}

function notebookRequest(
  panel: NotebookPanel,
  prefix: string,
  suffix: string,
  options: IBuildOptions
): EditorRequest | null {
  const notebook = panel.content;
  const cell = notebook.activeCell;
  const model = notebook.model;
  if (!cell || !model) {
    return null;
  }
  const cellType = cell.model.type;
  if (cellType === 'raw' || (cellType === 'markdown' && !options.markdownCells)) {
    return null;
  }
  const contextCells = cellsAbove(panel, notebook.activeCellIndex);
  if (!prefix.trim() && !suffix.trim() && contextCells.length === 0) {
    return null;
  }
  const path = panel.context.path;
  return {
    ...clipped(prefix, suffix),
    language: cellType === 'markdown' ? 'markdown' : notebookLanguage(panel),
    path,
    cell_id: cell.model.id,
    context_cells: contextCells,
    editor_id: editorId(path, cell.model.id),
    kernel_namespace: kernelNamespace(panel)
  };
}

/**
 * The active code cell around its cursor, clipped as a completion request is: what a
 * warm-up sends so that the next completion in this cell finds its lines above the
 * cursor's line already evaluated. Empty for a markdown or raw cell (or none).
 */
export function activeCellAroundCursor(panel: NotebookPanel): {
  prefix: string;
  suffix: string;
} {
  const cell = panel.content.activeCell;
  const editor = cell?.editor;
  if (!cell || !editor || cell.model.type !== 'code') {
    return { prefix: '', suffix: '' };
  }
  const text = cell.model.sharedModel.getSource();
  // An offset in the editor's document: UTF-16 units, as JavaScript slices.
  const cursor = Math.min(editor.getOffsetAt(editor.getCursorPosition()), text.length);
  return clipped(text.slice(0, cursor), text.slice(cursor));
}

/**
 * The cells above `index`, in notebook order: code as is, markdown as markdown
 * (the server turns it into comments), raw and empty cells left out. When the
 * notebook is long, the cells nearest to the cursor are kept.
 */
export function cellsAbove(panel: NotebookPanel, index: number): IContextCell[] {
  const cells = panel.content.model?.cells;
  if (!cells || index <= 0) {
    return [];
  }
  const kept: IContextCell[] = [];
  let chars = 0;
  for (let i = Math.min(index, cells.length) - 1; i >= 0; i--) {
    const cell = cells.get(i);
    const cellType = cell.type as CellType;
    if (cellType !== 'code' && cellType !== 'markdown') {
      continue;
    }
    const source = cell.sharedModel.getSource();
    if (!source.trim() || source.length > MAX_SOURCE_CHARS) {
      // An empty cell says nothing; a huge one is pasted data, not code.
      continue;
    }
    if (chars + source.length > MAX_CONTEXT_CHARS || kept.length >= MAX_CONTEXT_CELLS) {
      break;
    }
    chars += source.length;
    kept.push({ cell_type: cellType, source });
  }
  return kept.reverse();
}

/**
 * The kernel's language, as the notebook file records it.
 */
export function notebookLanguage(panel: NotebookPanel): string {
  const model = panel.content.model;
  const info = model?.getMetadata('language_info') as { name?: string } | undefined;
  const spec = model?.getMetadata('kernelspec') as { language?: string } | undefined;
  const preferred = panel.sessionContext?.kernelPreference?.language;
  return (info?.name || spec?.language || preferred || 'python').toLowerCase();
}

/**
 * Languages the file editor may complete, by the MIME type CodeMirror gives a file.
 * Plain text, markdown, JSON… get no completion (and are never sent).
 */
const LANGUAGE_BY_MIME: { [mime: string]: string } = {
  'text/x-python': 'python',
  'text/x-ipython': 'python',
  'text/x-cython': 'python',
  'text/x-rsrc': 'r',
  'text/x-r': 'r',
  'text/x-julia': 'julia',
  'text/x-sh': 'bash',
  'text/x-sql': 'sql',
  'text/javascript': 'javascript',
  'application/javascript': 'javascript',
  'text/typescript': 'typescript',
  'application/typescript': 'typescript',
  'text/x-csrc': 'c',
  'text/x-c++src': 'cpp',
  'text/x-java': 'java',
  'text/x-rustsrc': 'rust',
  'text/x-go': 'go',
  'text/x-octave': 'octave',
  'text/x-ocaml': 'ocaml'
};

const LANGUAGE_BY_EXTENSION: { [extension: string]: string } = {
  py: 'python',
  pyw: 'python',
  r: 'r',
  jl: 'julia',
  sh: 'bash',
  sql: 'sql',
  js: 'javascript',
  ts: 'typescript',
  c: 'c',
  h: 'c',
  cpp: 'cpp',
  java: 'java',
  rs: 'rust',
  go: 'go',
  m: 'octave',
  ml: 'ocaml'
};

export function languageOf(mimeType: string, path: string): string | null {
  const byMime = LANGUAGE_BY_MIME[mimeType];
  if (byMime) {
    return byMime;
  }
  const extension = path.split('.').pop()?.toLowerCase() ?? '';
  return path.includes('.') ? (LANGUAGE_BY_EXTENSION[extension] ?? null) : null;
}

/**
 * A stable id for one editor in this tab (kept short: the server allows 256 chars).
 */
export function editorId(path: string, part: string): string {
  return `${TAB_ID}:${hashString(path)}:${part}`.slice(0, 256);
}

/**
 * FNV-1a: a short, stable digest of a path (not a security measure).
 */
function hashString(value: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < value.length; i++) {
    hash ^= value.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0).toString(16).padStart(8, '0');
}

function clipped(prefix: string, suffix: string): { prefix: string; suffix: string } {
  return {
    // The model continues the prefix: its END matters; of the suffix, its start.
    prefix: prefix.length > MAX_PREFIX_CHARS ? prefix.slice(-MAX_PREFIX_CHARS) : prefix,
    suffix: suffix.slice(0, MAX_SUFFIX_CHARS)
  };
}

function isFileEditorWidget(widget: Widget): widget is IDocumentWidget<FileEditor> {
  const candidate = widget as unknown as Partial<IDocumentWidget<FileEditor>>;
  return candidate.content instanceof FileEditor && !!candidate.context;
}
