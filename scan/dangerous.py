"""Which pickle globals are dangerous callables, which are merely outside the allowlist, which are allowed.

"Dangerous" is a documented, deliberately broad list of what an attacker reaches for
(docs/SCAN.md repeats it): running commands, evaluating or compiling code, importing
modules or resolving names, touching files and sockets, and loading another pickle or
checkpoint (the downgrade from weights_only). Everything else outside the allowlist is
still refused, only reported under a milder name: pickle can call any importable
callable, so "not dangerous" never means "safe".
"""

from __future__ import annotations

from nnseal.readers.allowlist import allowed_global_names

# Whole modules (and their submodules), with why they are dangerous.
DANGEROUS_MODULES: dict[str, str] = {
    "os": "runs commands and touches files",
    "posix": "os under its real name on Linux: runs commands",
    "nt": "os under its real name on Windows: runs commands",
    "subprocess": "runs commands",
    "pty": "runs commands",
    "commands": "runs commands (Python 2)",
    "popen2": "runs commands (Python 2)",
    "platform": "runs commands (platform.popen and friends)",
    "importlib": "imports any module",
    "imp": "imports any module",
    "pkgutil": "resolves any module attribute",
    "runpy": "runs modules and code",
    "code": "evaluates code",
    "codeop": "compiles code",
    "cProfile": "runs code strings",
    "profile": "runs code strings",
    "timeit": "runs code strings",
    "trace": "runs code strings",
    "pdb": "runs code strings",
    "bdb": "runs code strings",
    "doctest": "runs code strings",
    "pydoc": "imports any module, runs a pager command",
    "ctypes": "calls native code and writes memory",
    "_ctypes": "calls native code and writes memory",
    "cffi": "calls native code",
    "socket": "opens network connections",
    "ssl": "opens network connections",
    "http": "opens network connections",
    "httplib": "opens network connections (Python 2)",
    "urllib": "opens network connections",
    "urllib2": "opens network connections (Python 2)",
    "requests": "opens network connections",
    "ftplib": "opens network connections",
    "smtplib": "opens network connections",
    "telnetlib": "opens network connections",
    "asyncio": "runs commands and opens connections",
    "webbrowser": "starts programs",
    "shutil": "copies, moves and deletes files",
    "tempfile": "creates files",
    "glob": "lists files",
    "io": "opens files",
    "_io": "opens files",
    "fileinput": "opens files",
    "sys": "reaches sys.modules and the interpreter's state",
    "gc": "reaches every live object",
    "inspect": "reaches frames and globals",
    "types": "builds functions and code objects",
    "marshal": "loads code objects",
    "pickle": "loads another pickle",
    "_pickle": "loads another pickle",
    "cPickle": "loads another pickle (Python 2)",
    "dill": "loads another pickle",
    "cloudpickle": "rebuilds arbitrary functions",
    "joblib": "loads another pickle",
    "shelve": "loads another pickle",
    "multiprocessing": "starts processes",
    "concurrent": "starts processes and threads",
    "threading": "starts threads",
    "signal": "changes signal handlers",
    "venv": "runs commands",
    "ensurepip": "runs pip",
    "pip": "installs packages",
    "setuptools": "runs build code",
    "distutils": "runs build code and writes files",
    "numpy.f2py": "evaluates code strings",
    "numpy.testing": "runs code strings",
    "numpy.distutils": "runs commands",
    "torch.jit": "compiles and runs TorchScript",
    "torch._dynamo": "compiles and runs code",
    "torch._inductor": "compiles and runs code",
    "torch.hub": "downloads and runs code",
    "torch.utils.cpp_extension": "compiles and loads native code",
    "torch.fx.experimental.symbolic_shapes": "evaluates guard expressions (code strings)",
    "torch.utils.bottleneck": "runs code under a profiler",
    "torch.utils.collect_env": "runs commands",
    "torch.utils._config_module": "loads another pickle",
    "torch.utils.data.datapipes.utils.decoder": "loads another pickle",
    "aiohttp": "opens network connections",
    "uuid": "runs commands (uuid._get_command_stdout)",
    "test": "spawns Python processes (test.support)",
    "imaplib": "runs commands (IMAP4_stream)",
    "lib2to3": "loads another pickle (grammar files)",
    "idlelib": "runs code strings",
    "_osx_support": "runs commands",
    "_aix_support": "runs commands",
    "_pyrepl": "runs commands (pager)",
    "copyreg._extension_registry": "an extension code (EXT1/EXT2/EXT4) whose global is only known at load time",
}

# Single names in modules that are otherwise harmless or needed.
DANGEROUS_NAMES: dict[str, str] = {
    "builtins.eval": "evaluates code",
    "builtins.exec": "runs code",
    "builtins.compile": "compiles code",
    "builtins.__import__": "imports any module",
    "builtins.getattr": "reaches any attribute, os.system of a module object included",
    "builtins.setattr": "overwrites any attribute",
    "builtins.delattr": "deletes any attribute",
    "builtins.globals": "reaches module globals",
    "builtins.locals": "reaches local variables",
    "builtins.vars": "reaches any namespace",
    "builtins.open": "opens files",
    "builtins.input": "reads the terminal",
    "builtins.breakpoint": "starts a debugger",
    "builtins.help": "starts a pager",
    "builtins.memoryview": "reaches raw memory",
    "builtins.apply": "calls anything (Python 2)",
    "builtins.execfile": "runs a file (Python 2)",
    "builtins.reload": "re-imports a module (Python 2)",
    "functools.partial": ("binds any callable for a later call "
                          "(partial(torch.load, ...) with the restricted loader off)"),
    "functools.reduce": "calls any callable repeatedly",
    "operator.attrgetter": "reaches any attribute",
    "operator.methodcaller": "calls any method",
    "operator.itemgetter": "reaches any item",
    "_operator.attrgetter": "reaches any attribute",
    "_operator.methodcaller": "calls any method",
    "_operator.itemgetter": "reaches any item",
    "logging.FileHandler": "creates files",
    "numpy.load": "loads a pickle when allow_pickle=True",
    "numpy.fromfile": "reads files",
    "numpy.memmap": "maps files",
    "numpy.save": "writes files",
    "numpy.savez": "writes files",
    "numpy.tofile": "writes files",
    "numpy.lib.npyio.load": "loads a pickle when allow_pickle=True",
    "numpy.ctypeslib.load_library": "loads native code",
    "torch.load": "loads another checkpoint, possibly with the restricted loader off",
    "torch.serialization.load": "loads another checkpoint, possibly with the restricted loader off",
    "torch.serialization._load": "loads another checkpoint",
    "torch.serialization._legacy_load": "loads another checkpoint",
    "torch.save": "writes files",
    "torch.serialization.save": "writes files",
    "torch.ops.load_library": "loads native code",
    "torch._C._jit_load_from_file": "loads TorchScript",
    "torch.classes.load_library": "loads native code",
    "pandas.read_pickle": "loads another pickle",
    "pandas.io.pickle.read_pickle": "loads another pickle",
}


def danger_of(name: str) -> str | None:
    """Why the dotted global ``name`` is dangerous, or None if it is not on the list."""
    if name in DANGEROUS_NAMES:
        return DANGEROUS_NAMES[name]
    module = name.rpartition(".")[0]
    while module:
        if module in DANGEROUS_MODULES:
            return DANGEROUS_MODULES[module]
        module = module.rpartition(".")[0]
    return None


def classify_global(name: str) -> str:
    """``allowed``, ``dangerous`` or ``not-allowlisted``. An allowlisted name is never dangerous."""
    if name in allowed_global_names():
        return "allowed"
    return "dangerous" if danger_of(name) is not None else "not-allowlisted"
