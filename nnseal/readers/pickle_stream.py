"""Static inventory of a pickle: every global it would import, without executing any of it.

The walk reads opcodes with ``nnseal.readers.pickle_ops.iter_ops`` (pickletools' opcode
table, the C unpickler's argument rules), which only parses them. A small symbolic stack
follows constants (strings, numbers, tuples of them, globals) through the memo so that
protocol-4 ``STACK_GLOBAL`` names and torch's persistent storage ids can be read back;
everything a real unpickler would build is an opaque placeholder here.

Torch-free on purpose: ``nnseal scan`` and the checkpoint archive check run it on
untrusted files before anything heavier is imported.
"""

from __future__ import annotations

import _compat_pickle
import pickletools
from dataclasses import dataclass, field
from typing import Any

from nnseal.errors import MalformedPickle
from nnseal.readers.pickle_ops import PickleDecodeError, iter_ops

# torch.save's data.pkl of a large nnU-Net checkpoint is well under 1 MiB (storages live
# in separate zip entries); these limits leave room and still bound a hostile input.
DEFAULT_MAX_BYTES = 64 << 20
DEFAULT_MAX_OPS = 5_000_000
# Tuples on the symbolic stack beyond these are not modelled (see _build_tuple).
MAX_TUPLE_NODES = 10_000
MAX_TUPLE_DEPTH = 32


@dataclass(frozen=True)
class GlobalRef:
    """A global reference on the symbolic stack (``module.name``)."""

    name: str


class _Opaque:
    """Anything the walker does not model: the result of REDUCE, BUILD, a dict, a list."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<opaque>"


OPAQUE = _Opaque()
_MARK = object()
_MISSING = object()


@dataclass
class PickleScan:
    """What a pickle would import and how it is built. ``globals`` is in first-use order."""

    globals: list[str]
    protocol: int
    opcodes: set[str]
    # Arguments of every BINPERSID/PERSID: tuples of constants, GlobalRef and OPAQUE.
    persistent_ids: list[Any] = field(default_factory=list)
    # Things a loader may choke on or an attacker may use to hide from scanners.
    anomalies: list[str] = field(default_factory=list)
    ops: int = 0


def normalize_global(module: str, name: str) -> str:
    """The dotted name an unpickler would resolve, after the Python 2 compatibility renames.

    torch's weights-only unpickler applies these renames at every protocol, so the scan
    does too: ``__builtin__.eval`` is reported as ``builtins.eval``.
    """
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    return f"{module}.{name}"


def _constant(op: pickletools.OpcodeInfo, arg: Any) -> Any:
    if op.name == "NONE":
        return None
    if op.name == "NEWTRUE":
        return True
    if op.name == "NEWFALSE":
        return False
    if op.name in ("EMPTY_TUPLE",):
        return ()
    return arg


class _Tuple(tuple):
    """A tuple the walker built, with the size of the tree it spans counted once at construction.

    DUP and memo GETs let a few bytes of pickle nest a tuple in itself again and again
    (``(x, x)``, ``((x, x), (x, x))``, ...): a tree of 2**n nodes from 2n bytes. Counting
    at construction keeps every later walk over it (freezing, printing) bounded.
    """

    nodes: int
    depth: int


def _build_tuple(items: list[Any]) -> Any:
    """The tuple of ``items``, or OPAQUE when it would be too big or too deep to model.

    Only persistent ids are read back from tuples, and torch writes those as flat 5-tuples:
    a collapsed one is refused downstream as a form torch.save never writes.
    """
    nodes, depth = 1, 1
    for item in items:
        if isinstance(item, _Tuple):
            nodes += item.nodes
            depth = max(depth, item.depth + 1)
        else:
            nodes += 1
    if nodes > MAX_TUPLE_NODES or depth > MAX_TUPLE_DEPTH:
        return OPAQUE
    built = _Tuple(items)
    built.nodes, built.depth = nodes, depth
    return built


def freeze(value: Any) -> Any:
    """Replace stack-only sentinels so callers only see constants, GlobalRef and OPAQUE."""
    if isinstance(value, _Tuple):
        # Built by the walker from popped items: pop() refuses a MARK and pop_to_mark() stops
        # at one, so it holds no sentinel, nor do the tuples inside it.
        return value
    if isinstance(value, tuple):
        return tuple(freeze(v) for v in value)
    if value is _MARK:
        return OPAQUE
    return value


# (walker class, opcode) -> handler function: resolved once per process, bound once per walk.
_UNBOUND_HANDLERS: dict[tuple[type, pickletools.OpcodeInfo], Any] = {}


class PickleWalker:
    """Follows the stack effect of every opcode; one handler per opcode, looked up once per kind.

    Handlers are found by opcode name (``_op_<NAME>``); opcodes without one either push a
    constant (no stack input, one output) or go through ``generic``. Resolving that once
    per opcode kind, not once per opcode, keeps the walk fast: a small nnU-Net
    checkpoint's data.pkl has about 8,000 opcodes.
    """

    def __init__(self, data: bytes, max_ops: int, source: str | None):
        self.data = data
        self.max_ops = max_ops
        self.source = source
        self.stack: list[Any] = []
        self.memo: dict[int, Any] = {}
        self.globals: dict[str, None] = {}
        self.persistent_ids: list[Any] = []
        self.anomalies: list[str] = []
        self.protocol: int | None = None
        self.ops = 0
        self._handlers: dict[pickletools.OpcodeInfo, Any] = {}

    def fail(self, reason: str) -> MalformedPickle:
        return MalformedPickle(reason, path=self.source)

    def pop(self, pos: int) -> Any:
        if not self.stack or self.stack[-1] is _MARK:
            raise self.fail(f"stack underflow at byte {pos}: not a well-formed pickle")
        return self.stack.pop()

    def pop_to_mark(self, pos: int) -> list[Any]:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i] is _MARK:
                items = self.stack[i + 1:]
                del self.stack[i:]
                return items
        raise self.fail(f"missing MARK at byte {pos}: not a well-formed pickle")

    def add_global(self, module: str, name: str) -> GlobalRef:
        dotted = normalize_global(module, name)
        self.globals.setdefault(dotted, None)
        return GlobalRef(dotted)

    def step(self, op: pickletools.OpcodeInfo, arg: Any, pos: int) -> None:
        handler = self._handlers.get(op)
        if handler is None:
            handler = self._handlers[op] = self._handler_for(op)
        handler(op, arg, pos)

    def _handler_for(self, op: pickletools.OpcodeInfo):
        return self._unbound_handler_for(op).__get__(self)

    def _unbound_handler_for(self, op: pickletools.OpcodeInfo):
        key = (type(self), op)
        unbound = _UNBOUND_HANDLERS.get(key)
        if unbound is None:
            unbound = getattr(type(self), f"_op_{op.name}", None)
            if unbound is None:
                constant = not op.stack_before and len(op.stack_after) == 1
                unbound = type(self)._push_constant if constant else type(self)._generic
            _UNBOUND_HANDLERS[key] = unbound
        return unbound

    # --- handlers ------------------------------------------------------------------

    def _op_PROTO(self, op, arg, pos):
        self.protocol = int(arg)

    def _nothing(self, op, arg, pos):
        pass

    _op_FRAME = _op_STOP = _nothing

    def _op_MARK(self, op, arg, pos):
        self.stack.append(_MARK)

    def _op_GLOBAL(self, op, arg, pos):
        self.stack.append(self.add_global(*arg))

    def _op_STACK_GLOBAL(self, op, arg, pos):
        gname, module = self.pop(pos), self.pop(pos)
        if isinstance(module, str) and isinstance(gname, str):
            self.stack.append(self.add_global(module, gname))
        else:
            self.anomalies.append(f"STACK_GLOBAL at byte {pos} with operands that are not plain strings")
            self.stack.append(OPAQUE)

    def _op_INST(self, op, arg, pos):
        self.pop_to_mark(pos)
        self.add_global(*arg)
        self.stack.append(OPAQUE)

    def _op_EXT1(self, op, arg, pos):
        # copyreg's extension registry maps the code to a global at load time: unknowable
        # statically, so it is reported as a global no allowlist holds.
        self.stack.append(self.add_global("copyreg._extension_registry", f"code_{int(arg)}"))

    _op_EXT2 = _op_EXT4 = _op_EXT1

    def _op_PUT(self, op, arg, pos):
        if not self.stack:
            raise self.fail(f"{op.name} on an empty stack at byte {pos}")
        self.memo[int(arg)] = self.stack[-1]

    def _op_BINPUT(self, op, arg, pos):
        # PUT's twin for the binary forms, whose argument struct already read as an int: a
        # third of a checkpoint's opcodes are PUTs and GETs.
        stack = self.stack
        if not stack:
            raise self.fail(f"{op.name} on an empty stack at byte {pos}")
        self.memo[arg] = stack[-1]

    _op_LONG_BINPUT = _op_BINPUT

    def _op_MEMOIZE(self, op, arg, pos):
        if not self.stack:
            raise self.fail(f"MEMOIZE on an empty stack at byte {pos}")
        self.memo[len(self.memo)] = self.stack[-1]

    def _op_GET(self, op, arg, pos):
        key = int(arg)
        value = self.memo.get(key, _MISSING)
        if value is _MISSING:
            self.anomalies.append(f"{op.name} of memo slot {key} that was never stored (byte {pos})")
            value = OPAQUE
        self.stack.append(value)

    def _op_BINGET(self, op, arg, pos):
        value = self.memo.get(arg, _MISSING)
        if value is _MISSING:
            self.anomalies.append(f"{op.name} of memo slot {arg} that was never stored (byte {pos})")
            value = OPAQUE
        self.stack.append(value)

    _op_LONG_BINGET = _op_BINGET

    def _op_TUPLE(self, op, arg, pos):
        self.stack.append(_build_tuple(self.pop_to_mark(pos)))

    def _op_TUPLE1(self, op, arg, pos):
        self.stack.append(_build_tuple([self.pop(pos)]))

    def _op_TUPLE2(self, op, arg, pos):
        second = self.pop(pos)
        self.stack.append(_build_tuple([self.pop(pos), second]))

    def _op_TUPLE3(self, op, arg, pos):
        third = self.pop(pos)
        second = self.pop(pos)
        self.stack.append(_build_tuple([self.pop(pos), second, third]))

    def _op_BINPERSID(self, op, arg, pos):
        self.persistent_ids.append(freeze(self.pop(pos)))
        self.stack.append(OPAQUE)

    def _op_PERSID(self, op, arg, pos):
        self.persistent_ids.append(arg)
        self.stack.append(OPAQUE)

    def _op_DUP(self, op, arg, pos):
        if not self.stack:
            raise self.fail(f"DUP on an empty stack at byte {pos}")
        self.stack.append(self.stack[-1])

    def _op_POP(self, op, arg, pos):
        if self.stack and self.stack[-1] is _MARK:
            self.stack.pop()  # pickle's POP also discards a bare MARK
        else:
            self.pop(pos)

    def _op_POP_MARK(self, op, arg, pos):
        self.pop_to_mark(pos)

    def _push_constant(self, op, arg, pos):
        self.stack.append(_constant(op, arg))

    def _push_arg(self, op, arg, pos):
        self.stack.append(arg)

    # The constants torch.save writes most, pushed as their argument without _constant's checks.
    _op_BININT = _op_BININT1 = _op_BININT2 = _op_BINUNICODE = _op_SHORT_BINUNICODE = _op_BINFLOAT = _push_arg
    _op_LONG1 = _op_SHORT_BINSTRING = _op_SHORT_BINBYTES = _op_BINBYTES = _push_arg

    def _generic(self, op: pickletools.OpcodeInfo, arg: Any, pos: int) -> None:
        """Any other opcode: consume and produce placeholders per pickletools' stack effect."""
        before = op.stack_before
        if pickletools.markobject in before:
            # [..., mark, stackslice] or [..., mark, any, stackslice] (OBJ): pop to the mark,
            # then whatever sits below the mark in the description.
            self.pop_to_mark(pos)
            below = before[: before.index(pickletools.markobject)]
            for _ in below:
                self.pop(pos)
        else:
            for _ in before:
                self.pop(pos)
        for _ in op.stack_after:
            self.stack.append(OPAQUE)

    def run(self) -> PickleScan:
        max_ops = self.max_ops
        # opcode -> bound handler: one lookup per opcode
        table: dict[pickletools.OpcodeInfo, Any] = {}
        ops, pos = 0, 0
        try:
            for ops, (op, arg, pos, _) in enumerate(iter_ops(self.data), 1):
                handler = table.get(op)
                if handler is None:
                    handler = table[op] = self._handlers[op] = self._handler_for(op)
                if ops > max_ops:
                    self.ops = ops
                    raise self.fail(f"more than {max_ops} pickle opcodes: refusing to scan further")
                handler(op, arg, pos)
        except PickleDecodeError as err:
            # unknown opcodes, arguments the C unpickler refuses, data that ends too early
            raise self.fail(f"not a well-formed pickle ({err})") from None
        self.ops = ops
        stop_pos = pos  # iter_ops stops after STOP or raises
        trailing = len(self.data) - (stop_pos + 1)
        if trailing:
            self.anomalies.append(f"{trailing} bytes after the pickle's STOP opcode")
        if len(self.stack) != 1:
            self.anomalies.append(f"stack holds {len(self.stack)} items at STOP, expected 1")
        seen = self._handlers.keys()  # every opcode kind met, once each
        highest_op_proto = max((op.proto for op in seen), default=0)
        protocol = self.protocol if self.protocol is not None else min(highest_op_proto, 1)
        return PickleScan(
            globals=list(self.globals),
            protocol=protocol,
            opcodes={op.name for op in seen},
            persistent_ids=self.persistent_ids,
            anomalies=self.anomalies,
            ops=self.ops,
        )


def scan_pickle(data: bytes, *, max_ops: int = DEFAULT_MAX_OPS, max_bytes: int = DEFAULT_MAX_BYTES,
                source: str | None = None) -> PickleScan:
    """Statically list what ``data`` would import. Raises MalformedPickle if it cannot be parsed.

    ``source`` names the file in error messages. Nothing in ``data`` is executed.
    """
    if len(data) > max_bytes:
        raise MalformedPickle(f"pickle is {len(data)} bytes, over the {max_bytes}-byte scan limit", path=source)
    if not data:
        raise MalformedPickle("empty pickle", path=source)
    return PickleWalker(bytes(data), max_ops, source).run()
