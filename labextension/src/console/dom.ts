/**
 * Tiny DOM builders for the console's forms and tables (no framework needed).
 */

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Partial<Record<string, string>> = {},
  ...children: (Node | string | null)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined) {
      continue;
    }
    if (key === 'class') {
      node.className = value;
    } else if (key === 'text') {
      node.textContent = value;
    } else {
      node.setAttribute(key, value);
    }
  }
  for (const child of children) {
    if (child !== null) {
      node.append(child);
    }
  }
  return node;
}

export function select(
  options: { value: string; label: string }[],
  value: string,
  props: Partial<Record<string, string>> = {}
): HTMLSelectElement {
  const node = el('select', props);
  for (const option of options) {
    node.append(el('option', { value: option.value, text: option.label }));
  }
  node.value = value;
  return node;
}

export function labelled(text: string, control: HTMLElement): HTMLLabelElement {
  return el('label', { class: 'jp-copilot-Console-field' }, el('span', { text }), control);
}

/** A table of `rows`, one column per `columns` entry (key, header, format). */
export function table<T>(
  columns: { header: string; cell: (row: T) => string; numeric?: boolean }[],
  rows: T[],
  props: Partial<Record<string, string>> = {}
): HTMLTableElement {
  const head = el(
    'tr',
    {},
    ...columns.map(c =>
      el('th', { scope: 'col', class: c.numeric ? 'jp-mod-numeric' : '' }, c.header)
    )
  );
  const body = rows.map(row =>
    el(
      'tr',
      {},
      ...columns.map(c => el('td', { class: c.numeric ? 'jp-mod-numeric' : '' }, c.cell(row)))
    )
  );
  return el(
    'table',
    { class: 'jp-copilot-Console-table', ...props },
    el('thead', {}, head),
    el('tbody', {}, ...body)
  );
}
