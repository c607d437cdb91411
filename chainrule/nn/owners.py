"""Who holds a parameter: the name `named_parameters()` gives it in the outermost model that
contains it, found without the user passing the model anywhere.

Each time a module registers a Parameter or a child module, that module is noted as one of the
child's owners, weakly on both sides (nothing is kept alive, nothing is written into the modules,
and pickling or copying a model is unaffected). Naming walks from a parameter up to the outermost
module that holds it, through owners that still hold their child (one that has let go since, as
after `model.fc = other`, is passed over), and asks that module's `named_parameters()`, so the
name is exactly the one it gives: for a parameter shared within one model, the first in
registration order. Where a module is held by two separate models, the one that took it in last
names it, for as long as that model lives.
"""

import weakref

# id(child) -> (weak reference to the child, {id(owner): weak reference to owner}, the latest
# owner last). Keyed by id rather than by the object, so a module class with its own __eq__ (and
# no __hash__) is registered too; the child's reference removes the entry when the child dies.
_owners_of = {}


def note_owner(owner, child):
    """`owner` has just registered `child` (a Parameter or a Module) under some attribute name."""
    key = id(child)
    entry = _owners_of.get(key)
    if entry is None or entry[0]() is not child:

        def forget(ref, key=key):
            current = _owners_of.get(key)
            if current is not None and current[0] is ref:
                del _owners_of[key]

        entry = (weakref.ref(child, forget), {})
        _owners_of[key] = entry
    owners = entry[1]
    for dead in [k for k, ref in owners.items() if ref() is None]:
        del owners[dead]
    owners.pop(id(owner), None)
    owners[id(owner)] = weakref.ref(owner)


def note_children(owner):
    """Register every parameter and child module `owner` holds (after unpickling or copying,
    which fill a module's tables without going through its attribute assignment)."""
    for table in (owner.__dict__.get("_parameters", {}), owner.__dict__.get("_modules", {})):
        for child in table.values():
            if child is not None:
                note_owner(owner, child)


def _holder(child):
    """The live module that holds `child` now, the latest to have taken it in first."""
    entry = _owners_of.get(id(child))
    if entry is None or entry[0]() is not child:
        return None
    for ref in reversed(list(entry[1].values())):
        owner = ref()
        if owner is not None and _holds(owner, child):
            return owner
    return None


def _holds(owner, child):
    tables = owner.__dict__
    return any(
        value is child
        for table in ("_parameters", "_modules")
        for value in tables.get(table, {}).values()
    )


def outermost(child):
    """The outermost module that holds `child` (through modules that hold each other), or None."""
    seen, top = {id(child)}, None
    holder = _holder(child)
    while holder is not None and id(holder) not in seen:
        seen.add(id(holder))
        top = holder
        holder = _holder(holder)
    return top


def parameter_names(tensors):
    """{id(tensor): (name, model)} for the tensors that are parameters of a live module: `model`
    the outermost module that holds it, the name the one `model.named_parameters()` gives it."""
    found, listings = {}, {}
    for tensor in tensors:
        model = outermost(tensor)
        if model is None:
            continue
        listing = listings.get(id(model))
        if listing is None:
            listing = {id(p): name for name, p in model.named_parameters()}
            listings[id(model)] = listing
        if id(tensor) in listing:  # unless the model overrides named_parameters()
            found[id(tensor)] = (listing[id(tensor)], model)
    return found
