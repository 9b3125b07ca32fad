// How each verdict is marked, on the page (badge colours) and on the toolbar
// icon (a few letters): one table for page.js and background.js.
export const COLOURS = {
  declared_ai: ['#6a1b9a', '#fff'],
  likely_ai: ['#b71c1c', '#fff'],
  inconclusive: ['#f9a825', '#000'],
  no_sign: ['#1b5e20', '#fff'],
  error: ['#424242', '#fff'],
};
export const TOOLBAR_MARKS = { declared_ai: 'AI', likely_ai: 'AI', inconclusive: '?', no_sign: 'no', error: '!' };
