/**
 * Small pure helpers of the console (dates in the policy's timezone, numbers).
 */

/** `YYYY-MM-DD` of `date` in `timeZone`. */
export function dayIn(date: Date, timeZone: string): string {
  return localParts(date, timeZone).slice(0, 10);
}

/** `YYYY-MM-DDTHH:MM` of `date` in `timeZone` (what the policy's windows take). */
export function localParts(date: Date, timeZone: string): string {
  const parts = new Intl.DateTimeFormat('en-CA', {
    timeZone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    hourCycle: 'h23'
  }).formatToParts(date);
  const get = (type: string) => parts.find(p => p.type === type)?.value ?? '00';
  return `${get('year')}-${get('month')}-${get('day')}T${get('hour')}:${get('minute')}`;
}

/** The window from now to `minutes` later, in the policy's timezone. */
export function nextMinutes(
  minutes: number,
  timeZone: string,
  now = new Date()
): {
  start: string;
  end: string;
} {
  return {
    start: localParts(now, timeZone),
    end: localParts(new Date(now.getTime() + minutes * 60_000), timeZone)
  };
}

export function daysBefore(day: string, days: number): string {
  const date = new Date(`${day}T12:00:00Z`);
  date.setUTCDate(date.getUTCDate() - days);
  return date.toISOString().slice(0, 10);
}

export function formatNumber(value: number, digits = 0): string {
  if (digits > 0 && value !== 0 && Math.abs(value) < 1) {
    // Small energies (0.0003 gCO2e) keep their first significant digits, not "0".
    return value.toLocaleString(undefined, { maximumSignificantDigits: 2 });
  }
  return value.toLocaleString(undefined, {
    maximumFractionDigits: digits,
    minimumFractionDigits: 0
  });
}
