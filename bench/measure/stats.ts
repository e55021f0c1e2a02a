// Statistics for the bench: the median, and a bootstrap 95 % interval of the median (resampling
// blocks with replacement) with a seeded PRNG, so that the same figures give the same interval.
import { prng } from "../../test/support/chaos.ts";

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return NaN;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

// mulberry32, the seeded PRNG the soaks use: good enough to pick resamples.
export { prng };

/** The 2.5th and 97.5th percentiles of the medians of `resamples` resamples of `xs`. */
export function bootstrapMedianCi(xs: number[], resamples: number, seed: number): [number, number] {
  if (xs.length === 0) return [NaN, NaN];
  const rand = prng(seed);
  const meds = new Float64Array(resamples);
  const sample = new Array<number>(xs.length);
  for (let r = 0; r < resamples; r++) {
    for (let i = 0; i < xs.length; i++) sample[i] = xs[Math.floor(rand() * xs.length)];
    meds[r] = median(sample);
  }
  meds.sort();
  const at = (q: number) => meds[Math.min(resamples - 1, Math.max(0, Math.round(q * (resamples - 1))))];
  return [at(0.025), at(0.975)];
}

export const round = (x: number, d = 3) => Number(x.toFixed(d));
