"""Options that take several values after one flag, as nnU-Net's argparse ``nargs='+'`` does.

nnU-Net's commands read ``-f 0 1 2``, ``-c 2d 3d_fullres`` and ``-chk checkpoint_final.pth
checkpoint_best.pth``; click takes one value per flag. A command of class ``MultiValueCommand``
rewrites ``-f 0 1 2`` into ``-f 0 -f 1 -f 2`` before click parses it, for each option of class
``MultiValueOption``; the values end at the next word starting with ``-`` (as with argparse),
so ``-f 0 1 -c 2d`` is two folds and a configuration. Repeated flags (``-f 0 -f 1``) and commas
(``-f 0,1``) are read too. The rewrite knows every option of the command, so the value of
another option (``-o -f.zip``) is never taken for a flag.

Usage::

    @click.command(cls=MultiValueCommand)
    @click.option("-f", "folds", cls=MultiValueOption)
"""

from __future__ import annotations

import click


class MultiValueOption(click.Option):
    """A ``multiple`` option whose values may also follow one flag, or be comma-separated.

    ``split=False`` (paths: a folder name may hold a comma or a space) takes each value whole.
    """

    def __init__(self, *args, split: bool = True, **kwargs):
        kwargs["multiple"] = True
        self.split = split
        super().__init__(*args, **kwargs)

    def type_cast_value(self, ctx: click.Context, value):
        values = super().type_cast_value(ctx, value)
        if not self.split:
            return tuple(values or ())
        return tuple(part for item in values or () for part in str(item).replace(",", " ").split())


class MultiValueCommand(click.Command):
    """A command whose ``MultiValueOption`` options take every value up to the next ``-word``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, spread_values(self.params, args))


def spread_values(params: list[click.Parameter], args: list[str]) -> list[str]:
    """``-f 0 1 2`` -> ``-f 0 -f 1 -f 2`` for each MultiValueOption; everything else as given."""
    multi = {opt for p in params if isinstance(p, MultiValueOption) for opt in p.opts + p.secondary_opts}
    takes = {opt: p.nargs for p in params if isinstance(p, click.Option) and not p.is_flag and not p.count
             for opt in p.opts + p.secondary_opts}
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":  # click's end of options: the rest are arguments
            out.extend(args[i - 1:])
            break
        if arg in multi:
            values = []
            while i < len(args) and not args[i].startswith("-"):
                values.append(args[i])
                i += 1
            if not values:  # let click say what is missing (or take "-1" and let the option refuse it)
                out.append(arg)
            for value in values:
                out.extend((arg, value))
        elif arg in takes:
            out.append(arg)
            out.extend(args[i:i + takes[arg]])
            i += takes[arg]
        else:
            out.append(arg)
    return out
