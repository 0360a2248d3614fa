"""The IR as a networkx graph: the critical path of a gradient step by FLOPs, and its largest values.

    python examples/networkx_analysis.py

(docs/networkx.md explains what nodes and edges carry.)
"""

import networkx as nx
import numpy as np

import chainrule as cr
from chainrule.compiler.cost import node_cost


def loss(p, x, y):
    h = np.maximum(0, x @ p["W1"] + p["b1"])
    a = 1 / (1 + np.exp(-(h @ p["W2"] + p["b2"])))
    return -np.mean(y * np.log(a) + (1 - y) * np.log(1 - a))


rng = np.random.default_rng(0)
params = {"W1": rng.standard_normal((2, 16)), "b1": np.zeros(16), "W2": rng.standard_normal((16, 1)), "b2": np.zeros(1)}
x, y = rng.standard_normal((400, 2)), rng.integers(0, 2, (400, 1)).astype(float)

graph = cr.grad(loss).graph(params, x, y, stage="scheduled")
g = graph.to_networkx()
for node_id, data in g.nodes(data=True):  # weight each node by the FLOPs it computes
    data["flops"] = node_cost(graph, node_id).flops
for _u, v, data in g.edges(data=True):  # longest path by FLOPs: weigh an edge by its user's work
    data["flops"] = g.nodes[v]["flops"]
path = nx.dag_longest_path(g, weight="flops")
total = sum(d["flops"] for _, d in g.nodes(data=True))
print(
    f"{g.number_of_nodes()} nodes, {total:,} FLOPs; the critical path: {sum(g.nodes[n]['flops'] for n in path):,} FLOPs"
)
for n in path:
    d = g.nodes[n]
    if d["flops"]:
        print(
            f"  %{n:<3} {d['op']:<8} {'x'.join(map(str, d['shape'])) or 'scalar':<8} {d['flops']:>7,}  {d['name'] or ''}"
        )
heaviest = sorted(g.nodes, key=lambda n: -np.prod(g.nodes[n]["shape"]) * 8)[:3]
print("largest values:", ", ".join(f"%{n} {g.nodes[n]['op']} {g.nodes[n]['shape']}" for n in heaviest))
