"""Who holds a parameter: the name `named_parameters()` gives it in the outermost model that
contains it, found without the user passing the model anywhere.

Each time a module registers a Parameter or a child module, the child's latest owner is noted here,
weakly on both sides (nothing is kept alive, nothing is written into the modules, and pickling or
copying a model is unaffected). Naming walks from a parameter up its owners to the outermost
module and asks that module's `named_parameters()`, so the name is exactly the one it gives:
for a parameter shared within one model, the first in registration order. A parameter taken into
two separate models is named from the one that took it in last. An owner that has let go of the
child since (`model.fc = other`) is skipped, because its `named_parameters()` no longer lists it.
"""

import weakref

# id(child) -> (weak reference to the child, weak reference to the module that registered it
# last). Keyed by id rather than by the object, so a module class with its own __eq__ (and no
# __hash__) can still be registered; the child's reference removes the entry when it dies.
_owner_of = {}


def note_owner(owner, child):
    """`owner` has just registered `child` (a Parameter or a Module) under some attribute name."""
    key = id(child)

    def forget(ref, key=key):
        entry = _owner_of.get(key)
        if entry is not None and entry[0] is ref:
            del _owner_of[key]

    _owner_of[key] = (weakref.ref(child, forget), weakref.ref(owner))


def note_children(owner):
    """Register every parameter and child module `owner` holds (after unpickling or copying,
    which fill a module's tables without going through its attribute assignment)."""
    for table in (owner.__dict__.get("_parameters", {}), owner.__dict__.get("_modules", {})):
        for child in table.values():
            if child is not None:
                note_owner(owner, child)


def _owner(child):
    entry = _owner_of.get(id(child))
    if entry is None or entry[0]() is not child:
        return None
    return entry[1]()


def owners(child):
    """The modules above `child`, innermost first (its latest owner, that one's, and so on)."""
    chain, seen = [], {id(child)}
    owner = _owner(child)
    while owner is not None and id(owner) not in seen:
        seen.add(id(owner))
        chain.append(owner)
        owner = _owner(owner)
    return chain


def parameter_names(tensors):
    """{id(tensor): (name, model)} for the tensors that are parameters of a live model: the name
    `model.named_parameters()` gives it, `model` the outermost module that still lists it."""
    found, listings = {}, {}
    for tensor in tensors:
        for model in reversed(owners(tensor)):
            listing = listings.get(id(model))
            if listing is None:
                listing = {id(p): name for name, p in model.named_parameters()}
                listings[id(model)] = listing
            if id(tensor) in listing:
                found[id(tensor)] = (listing[id(tensor)], model)
                break
    return found
