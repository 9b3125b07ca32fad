// The local site the test drivers (drive.mjs, scenario.mjs) serve on
// 127.0.0.1: each driver answers its own routes; files come from a folder.
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { basename, extname, join } from 'node:path';

const CONTENT_TYPES = {
  '.html': 'text/html', '.png': 'image/png', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.webp': 'image/webp',
};

export const contentType = (path) => CONTENT_TYPES[extname(path).toLowerCase()] ?? 'application/octet-stream';

export async function readBody(request) {
  const chunks = [];
  for await (const chunk of request) chunks.push(chunk);
  return Buffer.concat(chunks);
}

// The file dir/NAME (the path's last part; with `alternative`, dir/ALTERNATIVE
// when it exists), or 404.
export async function sendFile(response, dir, path, { alternative = null, headers = {} } = {}) {
  const name = basename(path);
  try {
    const body = await (alternative ? readFile(join(dir, alternative)).catch(() => readFile(join(dir, name)))
      : readFile(join(dir, name)));
    response.writeHead(200, { 'Content-Type': contentType(path), ...headers }).end(body);
  } catch {
    response.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found');
  }
}

// handle(request, response, url, path) for every request; resolves to the listening server.
export function serveSite(handle) {
  const server = createServer((request, response) => {
    const url = new URL(request.url, 'http://x');
    return handle(request, response, url, decodeURIComponent(url.pathname));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}
