"""The n best word strings of a lattice under the decoder's bestpath score (see lattice.py), best first.

A*: states are (node, last two real words), which is all the trigram needs; a backward pass gives each state its
best completion score, so complete paths leave the queue best first, and of paths that reach a state with the
same words only the first (best) goes on. Scores follow the decoder's arithmetic (lattice.add_step); the heuristic
leaves out its float32 rounding, which can only lower a score, so it stays an upper bound and the search exact.

A lattice so dense that its state graph would pass `max_states` (long runs of fillers multiply the histories) is
searched by a list Viterbi pass instead: each node keeps its best partial paths with distinct words, so a path
whose prefix falls out of a list is lost.
"""

import heapq
from dataclasses import dataclass

from lattice import START, DecoderWeights, Lattice, RawLogProb, Step, StepScorer, add_step


@dataclass
class Hypothesis:
    words: tuple[str, ...]
    score: int  # the decoder's path score, internal units, final </s> acoustic score included
    acoustic: int  # internal units, final </s> acoustic score included
    filler_penalty: int  # internal units
    lm_raw: int  # unweighted LM log-probability of the words and </s>, unshifted log-base-1.0001 units


# A path in progress: (score, words, acoustic, filler penalty, raw LM log-probability)
EMPTY_PATH = (0, (), 0, 0, 0)


def _extend(path: tuple, step: Step, word: str | None) -> tuple:
    score, words, acoustic, penalty, lm_raw = path
    return (add_step(score, step.edge_score, step.lm_term), words if word is None else words + (word,),
            acoustic + step.acoustic, penalty + step.filler_penalty, lm_raw + step.raw_logprob)


def _state_graph(lattice: Lattice, scorer: StepScorer, max_states: int) -> dict | None:
    """{(node, history): [(next state, step)]} in time order, or None past max_states states."""
    histories: dict[int, dict[tuple, None]] = {lattice.start: {(START,): None}}  # dicts keep a fixed order
    graph, count = {}, 1
    for node in sorted(range(len(lattice.words)), key=lattice.start_frames.__getitem__):
        for history in histories.get(node, ()):
            steps = []
            for target, edge_score in lattice.edges.get(node, ()):
                step = scorer.step(target, edge_score, history)
                following = histories.setdefault(target, {})
                if step.history not in following:
                    following[step.history] = None
                    count += 1
                steps.append(((target, step.history), step))
            graph[(node, history)] = steps
        if count > max_states:
            return None
    return graph


def _best_completions(graph: dict, end: int) -> dict:
    """An upper bound on the score from each state to the end node (exact but for add_step's rounding); states
    that cannot reach the end are left out."""
    best = {}
    for state in reversed(list(graph)):
        if state[0] == end:
            best[state] = 0
            continue
        scores = [step.approximate_weight + best[following] for following, step in graph[state] if following in best]
        if scores:
            best[state] = max(scores)
    return best


def _astar(lattice: Lattice, scorer: StepScorer, graph: dict, n: int) -> list[tuple]:
    completion = _best_completions(graph, lattice.end)
    first = (lattice.start, (START,))
    if first not in completion:
        return []
    heap = [(-completion[first], 0, first, EMPTY_PATH)]  # (-(score + best completion), tie-breaker, state, path)
    expanded, found, results = set(), set(), []
    pushes = 0
    while heap and len(results) < n:
        _, _, state, path = heapq.heappop(heap)
        if (state, path[1]) in expanded:
            continue
        expanded.add((state, path[1]))
        if state[0] == lattice.end:
            if path[1] not in found:
                found.add(path[1])
                results.append(path)
            continue
        for following, step in graph[state]:
            if following in completion:
                pushes += 1
                extended = _extend(path, step, scorer.text_word(following[0]))
                heapq.heappush(heap, (-(extended[0] + completion[following]), pushes, following, extended))
    return results


def _list_viterbi(lattice: Lattice, scorer: StepScorer, n: int, width: int) -> list[tuple]:
    paths: dict[int, list[tuple]] = {lattice.start: [EMPTY_PATH]}
    incoming: dict[int, list[tuple[int, int]]] = {}
    for source, targets in lattice.edges.items():
        for target, edge_score in targets:
            incoming.setdefault(target, []).append((source, edge_score))
    for node in sorted(incoming, key=lattice.start_frames.__getitem__):
        word, best = scorer.text_word(node), {}
        for source, edge_score in incoming[node]:
            for path in paths.get(source, ()):
                history = path[1][-2:] if len(path[1]) >= 2 else (START, *path[1])
                extended = _extend(path, scorer.step(node, edge_score, history), word)
                if extended[1] not in best or extended[0] > best[extended[1]][0]:
                    best[extended[1]] = extended
        paths[node] = sorted(best.values(), key=lambda path: (-path[0], path[1]))[:width]
    return paths.get(lattice.end, [])[:n]


def nbest(lattice: Lattice, lm: RawLogProb, n: int, final_ascr: int = 0, weights: DecoderWeights = DecoderWeights(),
          max_states: int = 300_000) -> tuple[list[Hypothesis], bool]:
    """(up to n hypotheses with distinct words, best first; whether the search was exact).

    `final_ascr`, the acoustic score of the final </s> segment (from the decoder's log), is the same for every
    path; it is added so that the scores are the ones the decoder reports.
    """
    scorer = StepScorer(lattice, weights, lm)
    graph = _state_graph(lattice, scorer, max_states)
    paths = _list_viterbi(lattice, scorer, n, 4 * n) if graph is None else _astar(lattice, scorer, graph, n)
    hyps = [Hypothesis(words, score + final_ascr, acoustic + final_ascr, penalty, lm_raw)
            for score, words, acoustic, penalty, lm_raw in paths]
    return hyps, graph is not None
