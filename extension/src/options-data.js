// The options page's page-scan settings, the reported verdicts (listed,
// deleted one by one, exported as a zip) and clearing all stored data.
import { exportZip, deleteReport, LABELS, listReports } from './reports.js';
import { checkedScanLimit, checkedSite, loadScanSettings, SCAN_LIMIT } from './scan-settings.js';
import { percent } from './verdict.js';

const field = (id) => document.getElementById(id);

function cell(row, text) {
  const td = document.createElement('td');
  td.textContent = text;
  row.append(td);
  return td;
}

async function showScanSettings() {
  const { scanLimit, autoScanSites } = await loadScanSettings();
  field('scanLimit').value = scanLimit;
  const list = field('autoScanSites');
  list.replaceChildren(...autoScanSites.map((site) => {
    const item = document.createElement('li');
    const remove = document.createElement('button');
    remove.textContent = 'Remove';
    remove.addEventListener('click', async () => {
      const settings = await loadScanSettings();
      await chrome.storage.local.set({ autoScanSites: settings.autoScanSites.filter((value) => value !== site) });
      showScanSettings();
    });
    item.append(`${site} `, remove);
    return item;
  }));
  if (autoScanSites.length === 0) {
    list.append(Object.assign(document.createElement('li'), { textContent: 'None: pages are scanned only when you ask.' }));
  }
}

function saveScanLimit() {
  const { scanLimit, problem } = checkedScanLimit(field('scanLimit').value);
  if (problem) {
    field('scanStatus').textContent = `Not saved. ${problem}`;
    return;
  }
  chrome.storage.local.set({ scanLimit }).then(() => {
    field('scanStatus').textContent = 'Saved.';
  });
}

function addSite() {
  const { site, problem } = checkedSite(field('autoScanSite').value);
  if (problem) {
    field('scanStatus').textContent = `Not added. ${problem}`;
    return;
  }
  // Asked inside the click: the pages of that site can then be scanned as they load.
  chrome.permissions.request({ origins: [`${site}/*`] }).catch(() => false).then(async (granted) => {
    if (!granted) {
      field('scanStatus').textContent = `Not added: access to ${site} was not allowed, which scanning its pages needs.`;
      return;
    }
    const settings = await loadScanSettings();
    await chrome.storage.local.set({ autoScanSites: [...new Set([...settings.autoScanSites, site])] });
    field('autoScanSite').value = '';
    field('scanStatus').textContent = `Added: pages of ${site} are scanned as they load.`;
    showScanSettings();
  });
}

async function showReports() {
  const reports = await listReports();
  field('reportCount').textContent = reports.length === 0 ? 'No reports yet: "This verdict is wrong" on a verdict\'s card adds one.'
    : `${reports.length} report${reports.length === 1 ? '' : 's'}, kept in this browser only.`;
  field('exportReports').disabled = reports.length === 0;
  field('reports').replaceChildren(...reports.map((report) => {
    const row = document.createElement('tr');
    row.dataset.sha256 = report.sha256;
    cell(row, report.created.slice(0, 16).replace('T', ' '));
    cell(row, LABELS[report.label]);
    const { verdict } = report;
    cell(row, verdict.probability === null ? 'unknown' : `${verdict.verdict} ${percent(verdict.probability)}`);
    cell(row, [report.model.name, report.model.version].filter(Boolean).join(' '));
    cell(row, report.kept);
    cell(row, report.page_url ?? '(not kept)');
    const remove = document.createElement('button');
    remove.textContent = 'Delete';
    remove.addEventListener('click', async () => {
      await deleteReport(report.sha256);
      showReports();
    });
    cell(row, '').append(remove);
    return row;
  }));
}

async function exportReports() {
  const { zip, count } = await exportZip(await listReports());
  const link = document.createElement('a');
  link.href = URL.createObjectURL(new Blob([zip], { type: 'application/zip' }));
  link.download = `ai-face-reports-${new Date().toISOString().slice(0, 10)}.zip`;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 60000);
  field('reportStatus').textContent = `Exported ${count} report${count === 1 ? '' : 's'}.`;
}

// Asked twice: nothing a user gave is deleted on one stray click.
function clearAll() {
  field('clearConfirm').hidden = false;
}

async function clearConfirmed() {
  await chrome.storage.local.clear();
  field('clearConfirm').hidden = true;
  field('clearStatus').textContent = 'Everything stored was deleted: reports, page-scan settings and settings.';
  showScanSettings();
  showReports();
}

export function setUpDataOptions() {
  field('scanLimit').min = String(SCAN_LIMIT.min);
  field('scanLimit').max = String(SCAN_LIMIT.max);
  field('saveScanLimit').addEventListener('click', saveScanLimit);
  field('addAutoScanSite').addEventListener('click', addSite);
  field('exportReports').addEventListener('click', exportReports);
  field('clearAll').addEventListener('click', clearAll);
  field('clearYes').addEventListener('click', clearConfirmed);
  field('clearNo').addEventListener('click', () => {
    field('clearConfirm').hidden = true;
  });
  showScanSettings();
  showReports();
}
