#!/usr/bin/env python3
"""How fast can "errors 1% -> 2%" be detected at 200 requests/s? A simulation, stdlib only.

  oracle: the one-sided SPRT that knows both rates, H0 p = p0 = 0.01 against p = p1 = 0.02,
    on every request (Bernoulli, 200 requests/s), rejecting when the log likelihood ratio
    reaches ln(1/alpha). The alternative is exactly the truth and p0 is known: no
    alpha-level test of this null can be much faster; it is the floor for the judge.
  judge model: what mup's judge does after an immediate deployment (src/rollback/judge.cpp,
    sequential.cpp), for a baseline of N requests of the old version (x0 of them failed,
    drawn Binomial(N, p0) per run, normal approximation):
      error-rate share of alpha = alpha * 4/5 (weights 4 error rate : 1 p50 latency);
      p0u = rate_upper_bound(x0, N, share / 4): the largest q >= x0/N with
            N * KL(x0/N || q) <= ln(1 / (share / 4));
      test = BaselineTest(p0u): equal-weight mixture of Bernoulli likelihood ratios of
            p = min(r * p0u, (1 + p0u) / 2), r in {1.25, 1.5, 2, 3, 5, 10}, against p0u;
      reject when ln(mixture) >= ln(1 / (share * 3/4)), checked once per 100 ms poll
            (20 requests; the agent's analysis loop) on the cumulative counts.
    Only the error-rate trigger is modelled (the p50 trigger has nothing to find here).

Both statistics rise only at a failure, so runs are simulated failure by failure
(geometric gaps): exact for the per-request oracle and for the per-poll judge model.
Stopping time = requests / 200 (the judge model: the end of the poll that crossed).
Runs longer than --cap seconds count as not detected (reported).

usage: bench/lib/sprt_oracle.py [--runs 10000] [--seed 1] [--cap 600]
                               [--alphas "0.001 0.01"] [--baselines "12000 120000 720000"]
"""
import argparse
import math
import random

RATE = 200.0      # requests/s
P0, P1 = 0.01, 0.02
POLL = 20         # requests per 100 ms poll at 200 requests/s
RATIOS = (1.25, 1.5, 2, 3, 5, 10)


def kl(a, q):
    r = 0.0
    if a > 0:
        r += a * math.log(a / q)
    if a < 1:
        r += (1 - a) * math.log((1 - a) / (1 - q))
    return r


def rate_upper_bound(x, n, alpha):
    """sequential.cpp rate_upper_bound: bisection, 100 steps."""
    if n == 0:
        return 1.0
    a = x / n
    budget = math.log(1 / alpha) / n
    if kl(a, math.nextafter(1.0, 0.0)) <= budget:
        return 1.0
    lo, hi = a, 1.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if kl(a, mid) <= budget:
            lo = mid
        else:
            hi = mid
    return lo


def gap(rng, p):
    """Requests up to and including the next failure (geometric, support 1, 2, ...)."""
    u = 1.0 - rng.random()  # (0, 1]
    return int(math.log(u) / math.log1p(-p)) + 1


def q(v, p):  # the same quantile as bench/lib/judge_report.py
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p * (len(v) - 1))))] if v else float("nan")


def oracle_run(rng, alpha, cap_n):
    a, b = math.log(P1 / P0), math.log((1 - P1) / (1 - P0))
    h = math.log(1 / alpha)
    n = k = 0
    while True:
        n += gap(rng, P1)
        k += 1
        if n > cap_n:
            return None
        if k * a + (n - k) * b >= h:
            return n


def judge_run(rng, alpha, base_n, cap_n):
    share = alpha * 4 / 5
    x0 = max(0, round(rng.gauss(base_n * P0, math.sqrt(base_n * P0 * (1 - P0)))))
    p0u = rate_upper_bound(x0, base_n, share / 4)
    h = math.log(1 / (share * 3 / 4))
    alts = [min(r * p0u, (1 + p0u) / 2) for r in RATIOS]
    up = [math.log(p1 / p0u) for p1 in alts]
    down = [math.log((1 - p1) / (1 - p0u)) for p1 in alts]
    lg = math.log(len(alts))

    def stat(n, k):
        v = [k * u + (n - k) * d for u, d in zip(up, down)]
        m = max(v)
        return m + math.log(sum(math.exp(x - m) for x in v)) - lg

    n = k = 0
    nxt = gap(rng, P1)  # index of the next failure
    while True:
        # the poll that holds the next failure; every failure in it counts at its end
        end = -(-nxt // POLL) * POLL
        if end > cap_n:
            return None, p0u
        while nxt <= end:
            k += 1
            nxt += gap(rng, P1)
        n = end
        if stat(n, k) >= h:
            return n, p0u


def row(times, runs, cap):
    s = [t / RATE for t in times if t is not None]
    miss = runs - len(s)
    return (f"{q(s, .5):.1f} | {q(s, .95):.1f} | {q(s, .99):.1f}"
            + (f" | {miss} over {cap:.0f} s" if miss else " | 0"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cap", type=float, default=600.0, help="seconds")
    ap.add_argument("--alphas", default="0.001 0.01")
    ap.add_argument("--baselines", default="12000 120000 720000", help="requests")
    args = ap.parse_args()
    alphas = [float(a) for a in args.alphas.split()]
    baselines = [int(n) for n in args.baselines.split()]
    cap_n = int(args.cap * RATE)
    print(f"Errors {P0:.0%} -> {P1:.0%} at {RATE:.0f} requests/s, {args.runs} runs per line "
          f"(seed {args.seed}; bench/lib/sprt_oracle.py). Stopping time in seconds.\n")
    print("| test | alpha | baseline N | p0u (median) | median | p95 | p99 | not detected |")
    print("|---|---|---|---|---|---|---|---|")
    for alpha in alphas:
        rng = random.Random(args.seed * 1000003 + int(round(1 / alpha)))
        t = [oracle_run(rng, alpha, cap_n) for _ in range(args.runs)]
        print(f"| oracle SPRT, p0 known | {alpha} | - | {P0} | {row(t, args.runs, args.cap)} |")
    for alpha in alphas:
        for base_n in baselines:
            rng = random.Random(args.seed * 7919 + base_n + int(round(1 / alpha)))
            res = [judge_run(rng, alpha, base_n, cap_n) for _ in range(args.runs)]
            t = [r[0] for r in res]
            p0u = q([r[1] for r in res], .5)
            print(f"| judge model (mixture, p0u) | {alpha} | {base_n} | {p0u:.4f} |"
                  f" {row(t, args.runs, args.cap)} |")


if __name__ == "__main__":
    main()
