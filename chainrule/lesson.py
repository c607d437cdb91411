"""The lesson's network: one input (dosage), two softplus hidden nodes, one output, fitted to three
points. With the six weights the lesson already knows, gradient descent finds the last bias b3."""

import chainrule as cr

DOSAGE = [0.0, 0.5, 1.0]
EFFICACY = [0.0, 1.0, 0.0]
KNOWN = {"w1": 3.34, "b1": -1.43, "w2": -3.53, "b2": 0.57, "w3": -1.22, "w4": -2.30}


def predict(dosage, p):
    """The green squiggle: w3 * softplus(w1 x + b1) + w4 * softplus(w2 x + b2) + b3."""
    top = cr.softplus(dosage * p["w1"] + p["b1"])
    bottom = cr.softplus(dosage * p["w2"] + p["b2"])
    return top * p["w3"] + bottom * p["w4"] + p["b3"]


def ssr(p):
    x = cr.tensor(DOSAGE, dtype=cr.float64)
    y = cr.tensor(EFFICACY, dtype=cr.float64)
    residual = y - predict(x, p)
    return (residual**2).sum()


def run_b3_descent(learning_rate=0.1, min_step=0.001, max_steps=1000, out=print):
    params = {k: cr.tensor(v, dtype=cr.float64) for k, v in KNOWN.items()}
    for b3 in (0, 1, 2, 3):
        params["b3"] = cr.tensor(float(b3), dtype=cr.float64)
        out(f"SSR at b3 = {b3}: {ssr(params).item():.2f}")
    b3 = cr.tensor(0.0, dtype=cr.float64, requires_grad=True, name="b3")
    params["b3"] = b3
    out(f"{'step':>4} {'SSR':>8} {'slope':>9} {'step size':>10} {'new b3':>8}")
    for step in range(1, max_steps + 1):
        loss = ssr(params)
        b3.grad = None
        loss.backward()
        slope = b3.grad.item()
        step_size = slope * learning_rate
        with cr.no_grad():
            b3.sub_(step_size)
        out(f"{step:>4} {loss.item():>8.4f} {slope:>9.4f} {step_size:>10.4f} {b3.item():>8.4f}")
        if abs(step_size) < min_step:
            break
    out(f"b3 = {b3.item():.2f}")
    return b3.item()
