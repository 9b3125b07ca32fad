// Rectangles as {left, top, width, height}, shared by the page script and
// the offscreen document's comparison of the capture.
export const overlaps = (a, b) => a.left < b.left + b.width && b.left < a.left + a.width
  && a.top < b.top + b.height && b.top < a.top + a.height;
