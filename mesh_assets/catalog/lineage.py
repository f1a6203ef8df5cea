"""Lineage of a data product across domains, and its drawing as an inline SVG (no script, no network).

The mesh's asset graph (``mesh_assets.contract.graph.upstream_keys``) is reduced to what a reader of a product page
cares about: every table of the product's own domain, and the output ports (gold tables) of other domains,
upstream or downstream of the product. Other domains' private tables (bronze, silver) are passed through:
``a.port → (b's silver) → b.port`` is drawn as the edge ``a.port → b.port``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from markupsafe import Markup, escape

from mesh_assets.contract.graph import Key
from mesh_assets.contract.model import DataProduct, Table

NODE_HEIGHT, LANE_HEIGHT, LANE_WIDTH, ROW_GAP, COLUMN_GAP, MARGIN = 44, 4, 40, 12, 56, 12
# of the 12 px monospace name and the 11 px sans-serif line under it; generous so text never overflows its box
CHAR_WIDTH, SUB_CHAR_WIDTH = 7.4, 6.4


@dataclass(frozen=True)
class Lineage:
    """A product's lineage: ``nodes`` (asset keys, the product's own first) and ``edges`` ``(upstream,
    downstream)`` between them; ``own`` are the product's tables."""

    nodes: tuple[Key, ...]
    edges: tuple[tuple[Key, Key], ...]
    own: frozenset[Key]

    def upstream_ports(self) -> list[Key]:
        """Other products' tables this product reads (directly or through their private tables)."""
        return sorted({u for u, d in self.edges if d in self.own and u not in self.own})

    def downstream_ports(self) -> list[Key]:
        """Other products' tables that read this product's tables."""
        return sorted({d for u, d in self.edges if u in self.own and d not in self.own})


class AssetGraph:
    """The mesh's dependency graph over ``tables`` (every table of the loaded domains).

    ``upstream`` maps each key to the keys it reads; keys of tables that are not in ``tables`` (a domain that
    did not load) are kept as leaves.
    """

    def __init__(self, upstream: dict[Key, set[Key]]):
        self.upstream = upstream
        self.downstream: dict[Key, set[Key]] = {}
        for key, ups in upstream.items():
            for up in ups:
                self.downstream.setdefault(up, set()).add(key)

    def lineage(self, product: DataProduct) -> Lineage:
        """The lineage of ``product``: its tables, and every table of its domain and output port of another
        domain reachable upstream or downstream."""
        own = frozenset(t.key for t in product.tables)

        def visible(key: Key) -> bool:
            return key[0] == product.domain or key[1] == "gold"

        nodes: dict[Key, None] = dict.fromkeys(sorted(own, key=_layer_order))
        edges: set[tuple[Key, Key]] = set()
        for direction in ("up", "down"):
            step = self.upstream if direction == "up" else self.downstream
            queue, done = list(own), set(own)
            while queue:
                key = queue.pop()
                for other in _visible_neighbours(key, step, visible):
                    edges.add((other, key) if direction == "up" else (key, other))
                    nodes.setdefault(other)
                    if other not in done:
                        done.add(other)
                        queue.append(other)
        return Lineage(tuple(nodes), tuple(sorted(edges)), own)


def _layer_order(key: Key) -> tuple[int, Key]:
    return ({"bronze": 0, "silver": 1, "gold": 2}.get(key[1], 3), key)


def _visible_neighbours(start: Key, step: dict[Key, set[Key]], visible: Callable[[Key], bool]) -> set[Key]:
    """The nearest visible keys one or more ``step``s from ``start``, walking through invisible ones."""
    found, seen, stack = set(), {start}, list(step.get(start, ()))
    while stack:
        key = stack.pop()
        if key in seen:
            continue
        seen.add(key)
        if visible(key):
            found.add(key)
        else:
            stack.extend(step.get(key, ()))
    return found


def build_graph(tables: Iterable[Table], upstream_of: Callable[[Table], set[Key]]) -> AssetGraph:
    """The :class:`AssetGraph` of ``tables``, each table's inputs given by ``upstream_of`` (normally
    ``lambda t: mesh_assets.contract.graph.upstream_keys(mesh, t)``)."""
    return AssetGraph({t.key: set(upstream_of(t)) for t in tables})


def lineage_svg(lineage: Lineage, href: Callable[[Key], str | None], title: Callable[[Key], str]) -> Markup:
    """``lineage`` drawn left (upstream) to right (downstream) as an ``<svg>`` element.

    A layered layout: a node's column is its longest path from a source; an edge spanning several columns runs
    through a thin lane in each column it crosses, so it never passes behind a node; rows are ordered by the
    mean row of their neighbours (fewer crossings). ``href(key)`` is the link of a node (``None``: no link);
    ``title(key)`` its tooltip. The product's own tables are highlighted. Every text is escaped.
    """
    if not lineage.nodes:
        return Markup("")
    layout = _Layout(lineage)
    parts = [f'<svg class="lineage" xmlns="http://www.w3.org/2000/svg" width="{layout.width:.0f}" '
             f'height="{layout.height:.0f}" viewBox="0 0 {layout.width:.0f} {layout.height:.0f}" role="img" '
             'aria-label="lineage graph">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" class="arrow"/></marker></defs>']
    for u, d in lineage.edges:
        parts.append(f'<path class="edge" d="{layout.edge_path(u, d)}" marker-end="url(#arrow)"/>')
    for key in lineage.nodes:
        x, y = layout.left(key), layout.top[key]
        own = key in lineage.own
        node = (f'<g class="node{" own" if own else ""} layer-{escape(key[1])}" data-key="{escape("/".join(key))}">'
                f'<title>{escape(title(key))}</title>'
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{layout.node_width(key):.1f}" height="{NODE_HEIGHT}" rx="6"/>'
                f'<text x="{x + 12:.1f}" y="{y + 18:.1f}" class="name">{escape(label(key))}</text>'
                f'<text x="{x + 12:.1f}" y="{y + 34:.1f}" class="sub">{escape(_kind(key, own))}</text></g>')
        link = href(key)
        parts.append(f'<a href="{escape(link)}">{node}</a>' if link else node)
    parts.append("</svg>")
    return Markup("".join(parts))


Item = Key | tuple[Key, Key, int]  # a node, or the lane of edge (upstream, downstream) in a column


class _Layout:
    """Positions of a lineage's nodes and edge lanes (see :func:`lineage_svg`)."""

    def __init__(self, lineage: Lineage):
        ups: dict[Key, list[Key]] = {k: [] for k in lineage.nodes}
        for u, d in lineage.edges:
            ups[d].append(u)
        self.column: dict[Item, int] = {}
        for key in lineage.nodes:
            self._rank(key, ups, frozenset())
        before: dict[Item, list[Item]] = {k: [] for k in lineage.nodes}
        after: dict[Item, list[Item]] = {k: [] for k in lineage.nodes}
        for u, d in lineage.edges:
            chain: list[Item] = [u, *((u, d, c) for c in range(self.column[u] + 1, self.column[d])), d]
            for c, lane in enumerate(chain[1:-1], start=self.column[u] + 1):
                self.column[lane] = c
                before[lane], after[lane] = [], []
            for a, b in zip(chain, chain[1:], strict=False):
                after[a].append(b)
                before[b].append(a)
        columns: list[list[Item]] = [[] for _ in range(max(self.column.values()) + 1)]
        for item in sorted(self.column, key=lambda i: (_is_lane(i), str(i))):
            columns[self.column[item]].append(item)
        order = {item: float(i) for col in columns for i, item in enumerate(col)}
        # down, up, down: each column sorted by the mean position of its neighbours in the previous one
        for neighbours, sequence in ((before, columns), (after, columns[::-1]), (before, columns)):
            for col in sequence:
                col.sort(key=lambda i: _mean([order[n] for n in neighbours[i]], order[i]))
                order.update({item: float(i) for i, item in enumerate(col)})
        self.widths = [max((max(len(label(i)) * CHAR_WIDTH, len(_kind(i, i in lineage.own)) * SUB_CHAR_WIDTH) + 24
                            for i in col if not _is_lane(i)), default=LANE_WIDTH) for col in columns]
        heights = [sum(self._height(i) + ROW_GAP for i in col) - ROW_GAP for col in columns]
        self.height = MARGIN * 2 + max(heights)
        self.width = MARGIN * 2 + sum(self.widths) + COLUMN_GAP * (len(columns) - 1)
        self.x = [MARGIN + sum(self.widths[:c]) + COLUMN_GAP * c for c in range(len(columns))]
        self.top: dict[Item, float] = {}
        for col, height in zip(columns, heights, strict=True):
            y = MARGIN + (self.height - 2 * MARGIN - height) / 2  # centre shorter columns
            for item in col:
                self.top[item] = y
                y += self._height(item) + ROW_GAP

    def _rank(self, key: Key, ups: dict[Key, list[Key]], path: frozenset[Key]) -> int:
        if key not in self.column:
            # a cycle is a mesh error `mesh validate` reports; here it only must not recurse forever
            self.column[key] = 1 + max((self._rank(u, ups, path | {key}) for u in ups[key] if u not in path),
                                       default=-1)
        return self.column[key]

    @staticmethod
    def _height(item: Item) -> float:
        return LANE_HEIGHT if _is_lane(item) else NODE_HEIGHT

    def left(self, item: Item) -> float:
        return self.x[self.column[item]]

    def node_width(self, key: Key) -> float:
        return self.widths[self.column[key]]

    def edge_path(self, u: Key, d: Key) -> str:
        """An SVG path from the right of ``u`` through its lanes to the left of ``d``: curves between columns,
        straight lines along the lanes."""
        lanes = [(u, d, c) for c in range(self.column[u] + 1, self.column[d])]
        x, y = self.left(u) + self.node_width(u), self.top[u] + NODE_HEIGHT / 2
        path = [f"M {x:.1f} {y:.1f}"]
        for lane in lanes:
            lx, ly = self.left(lane), self.top[lane] + LANE_HEIGHT / 2
            path.append(_curve(x, y, lx, ly))
            x, y = lx + self.widths[self.column[lane]], ly
            path.append(f"L {x:.1f} {y:.1f}")
        path.append(_curve(x, y, self.left(d), self.top[d] + NODE_HEIGHT / 2))
        return " ".join(path)


def _kind(key: Key, own: bool) -> str:
    kind = "output port" if key[1] == "gold" else f"{key[1]} (private)"
    return f"{kind} · this product" if own else kind


def _is_lane(item: Item) -> bool:
    return isinstance(item[0], tuple)


def _curve(x1: float, y1: float, x2: float, y2: float) -> str:
    bend = (x2 - x1) / 2
    return f"C {x1 + bend:.1f} {y1:.1f} {x2 - bend:.1f} {y2:.1f} {x2:.1f} {y2:.1f}"


def _mean(values: list[float], default: float) -> float:
    return sum(values) / len(values) if values else default


def label(key: Key) -> str:
    """``domain.table`` for an output port, ``domain/layer/table`` for a private table."""
    return f"{key[0]}.{key[2]}" if key[1] == "gold" else "/".join(key)
