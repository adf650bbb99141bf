/**
 * From a notebook cell to an explanation request: the cell's code, the cells above
 * it as context, and (for an error) what the kernel said; the kernel's live names as
 * completions send them (the explanation is written after their prompt).
 *
 * Nothing here talks to the network; `explanation.ts` sends what this builds, and
 * only to the Jupyter server.
 */

import type { Cell, ICodeCellModel } from '@jupyterlab/cells';
import type * as nbformat from '@jupyterlab/nbformat';
import type { NotebookPanel } from '@jupyterlab/notebook';

import type { IErrorInfo, IExplainRequest, IHistoryTurn } from '../api';
import { cellsAbove, editorId } from '../context';
import { kernelNamespace } from '../kernel/namespace';
import type { ExplainLanguage } from './language';

export type ExplainKind = 'cell' | 'error' | 'question';

/**
 * The policy feature (`GET /copilot/status` → `features`) behind each kind.
 */
export const FEATURE_OF_KIND: Readonly<Record<ExplainKind, string>> = {
  cell: 'explain_cell',
  error: 'explain_error',
  question: 'ask'
};

/** schema.py: MAX_QUESTION_CHARS. */
export const MAX_QUESTION_CHARS = 4_000;

/**
 * The server refuses a cell above 100 000 characters (schema.py); say so before
 * sending it. Tracebacks are clipped far below the server's limits: it reads only
 * their last 4 000 characters (explain.py), where the failing line is.
 */
export const MAX_SOURCE_CHARS = 100_000;
export const MAX_TRACEBACK_FRAMES = 40;
export const MAX_TRACEBACK_CHARS = 16_000;
const MAX_EVALUE_CHARS = 4_000;
const MAX_ENAME_CHARS = 1_000;

/**
 * Why no request can be made for a cell.
 */
export type ExplainProblem = 'not-code' | 'empty' | 'too-long' | 'no-error';

export type BuiltRequest = { request: IExplainRequest } | { problem: ExplainProblem };

let requestCounter = 0;

/**
 * Build the request for `cell` of `panel`, or say why there is none.
 */
export function buildExplainRequest(
  kind: ExplainKind,
  panel: NotebookPanel,
  cell: Cell,
  language: ExplainLanguage
): BuiltRequest {
  if (cell.model.type !== 'code') {
    return { problem: 'not-code' };
  }
  const source = cell.model.sharedModel.getSource();
  if (!source.trim()) {
    return { problem: 'empty' };
  }
  if (source.length > MAX_SOURCE_CHARS) {
    return { problem: 'too-long' };
  }
  let error: IErrorInfo | null = null;
  if (kind === 'error') {
    error = errorOf(cell);
    if (!error) {
      return { problem: 'no-error' };
    }
  }
  const path = panel.context.path;
  // One explanation at a time per notebook and tab: a newer one cancels the older
  // generation on the server, whichever cell it was for.
  const editor = editorId(path, 'explain');
  const index = panel.content.widgets.indexOf(cell);
  return {
    request: {
      kind,
      source,
      error,
      context_cells: index > 0 ? cellsAbove(panel, index) : [],
      language,
      path,
      editor_id: editor,
      request_id: `${editor}#${++requestCounter}`.slice(-128),
      kernel_namespace: kernelNamespace(panel)
    }
  };
}

/**
 * A question about the notebook (a follow-up, or a free question): the active code
 * cell, the cells above it, its error (if any) and the kernel's names as context,
 * and the history.
 * Same `editor_id` as explanations of that notebook: a newer question cancels the
 * older answer on the server.
 */
export function buildQuestionRequest(
  question: string,
  panel: NotebookPanel | null,
  cell: Cell | null,
  language: ExplainLanguage,
  history: readonly IHistoryTurn[]
): IExplainRequest {
  const path = panel?.context.path ?? '';
  const editor = editorId(path || 'no-notebook', 'explain');
  const isCode = cell?.model.type === 'code';
  const source = isCode ? cell!.model.sharedModel.getSource() : '';
  const index = panel && cell ? panel.content.widgets.indexOf(cell) : -1;
  return {
    kind: 'question',
    question: question.slice(0, MAX_QUESTION_CHARS),
    source: source.length > MAX_SOURCE_CHARS ? '' : source,
    error: isCode ? errorOf(cell!) : null,
    context_cells: panel && index > 0 ? cellsAbove(panel, index) : [],
    language,
    path: path || null,
    editor_id: editor,
    request_id: `${editor}#${++requestCounter}`.slice(-128),
    history: [...history],
    kernel_namespace: panel ? kernelNamespace(panel) : []
  };
}

/**
 * The error a code cell's outputs end with (the kernel stops at the first one), or
 * null if it has none. Tracebacks are kept whole up to the limits above, ANSI
 * colours included: the server strips them.
 */
export function errorOf(cell: Cell): IErrorInfo | null {
  if (cell.model.type !== 'code') {
    return null;
  }
  const outputs = (cell.model as ICodeCellModel).outputs;
  for (let i = outputs.length - 1; i >= 0; i--) {
    const output = outputs.get(i);
    if (output.type === 'error') {
      const json = output.toJSON() as nbformat.IError;
      return {
        ename: String(json.ename ?? '').slice(0, MAX_ENAME_CHARS),
        evalue: String(json.evalue ?? '').slice(0, MAX_EVALUE_CHARS),
        traceback: clipTraceback(json.traceback ?? [])
      };
    }
  }
  return null;
}

/**
 * Whether a cell shows an error output.
 */
export function hasError(cell: Cell | null | undefined): boolean {
  if (!cell || cell.model.type !== 'code') {
    return false;
  }
  const outputs = (cell.model as ICodeCellModel).outputs;
  for (let i = 0; i < outputs.length; i++) {
    if (outputs.get(i).type === 'error') {
      return true;
    }
  }
  return false;
}

/**
 * The END of a traceback matters (the failing line, the exception); a deep
 * recursion repeats frames by the hundred. Keep the last frames within the budget.
 */
export function clipTraceback(traceback: readonly string[]): string[] {
  const kept: string[] = [];
  let chars = 0;
  for (let i = traceback.length - 1; i >= 0 && kept.length < MAX_TRACEBACK_FRAMES; i--) {
    const frame = String(traceback[i]);
    if (chars + frame.length > MAX_TRACEBACK_CHARS) {
      if (kept.length === 0) {
        kept.push(frame.slice(-MAX_TRACEBACK_CHARS));
      }
      break;
    }
    chars += frame.length;
    kept.push(frame);
  }
  return kept.reverse();
}
