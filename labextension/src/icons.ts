import { LabIcon } from '@jupyterlab/ui-components';

/**
 * A spark over a code bracket: "suggestions for your code". Drawn with
 * `jp-icon3` so that it follows the light and dark themes.
 */
const COPILOT_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M8.6 6.4 3 12l5.6 5.6 1.4-1.4L5.8 12 10 7.8z"/>
    <path d="M17 13.5l.9 2.1 2.1.9-2.1.9-.9 2.1-.9-2.1-2.1-.9 2.1-.9zM15.5 3l1.3 3.2L20 7.5l-3.2 1.3L15.5 12l-1.3-3.2L11 7.5l3.2-1.3z"/>
  </g>
</svg>`;

export const copilotIcon = new LabIcon({
  name: 'jupyter-copilot:copilot',
  svgstr: COPILOT_SVG
});

/**
 * A speech bubble with a spark: "the copilot explains". Same theme classes as above.
 */
const EXPLAIN_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M4 3h10v2H5v10h2v3.2L10.2 15H19v-4h2v6H11l-5.5 4.5V17H3V3z"/>
    <path d="M18 1l1.1 2.9L22 5l-2.9 1.1L18 9l-1.1-2.9L14 5l2.9-1.1z"/>
    <path d="M7 8h6v2H7zM7 11h8v2H7z"/>
  </g>
</svg>`;

export const explainIcon = new LabIcon({
  name: 'jupyter-copilot:explain',
  svgstr: EXPLAIN_SVG
});
