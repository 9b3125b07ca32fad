// From a calibrated probability to words: the mirror of aiface/verdict.py,
// which defines the rule; its constants come from verdict.json, generated from
// it (tests/test_extension_verdict.py checks both, on the same grid).
import RULES from './verdict.json' with { type: 'json' };

export const { no_sign_below: NO_SIGN_BELOW, verdicts: VERDICTS, meaning: MEANING } = RULES;

// likely_ai, inconclusive or no_sign for a calibrated P(AI-generated) and the
// model's threshold.
export function verdict(probability, threshold) {
  if (probability >= threshold) {
    return 'likely_ai';
  }
  if (probability < Math.min(threshold, NO_SIGN_BELOW)) {
    return 'no_sign';
  }
  return 'inconclusive';
}

// '86.6 %': tenths rounded half up in float64 arithmetic, as the Python.
export function percent(probability) {
  const tenths = Math.floor(probability * 1000 + 0.5);
  if (tenths >= 1000 && probability < 1) {
    return '> 99.9 %';
  }
  if (tenths <= 0 && probability > 0) {
    return '< 0.1 %';
  }
  return `${Math.floor(tenths / 10)}.${tenths % 10} %`;
}

// 'about 87', or 'fewer than 1' and 'more than 99' where rounding would say 0 or 100.
export function in100(probability) {
  const count = Math.floor(probability * 100 + 0.5);
  if (count < 1) {
    return 'fewer than 1';
  }
  return count > 99 ? 'more than 99' : `about ${count}`;
}

const fill = (template, values) => template.replace(/\{(\w+)\}/g, (_, key) => String(values[key]));

// The verdict and the words shown for it, as aiface.verdict.describe.
export function describe(probability, threshold) {
  const code = verdict(probability, threshold);
  const words = VERDICTS[code];
  const shown = percent(probability);
  return {
    code,
    label: words.label,
    badge: words.badge,
    percent: shown,
    meaning: fill(MEANING, { percent: shown, in_100: in100(probability) }),
    explanation: fill(words.explanation, { threshold: percent(threshold) }),
  };
}
