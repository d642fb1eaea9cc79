"""A Griffe extension: the package's reST-flavoured docstrings, readable as Markdown.

The docstrings are written for ``help()`` and doctest: ``>>>`` examples (with doctest
flags), ``:class:`X``` roles and ``::`` before literal blocks. Markdown would render the
examples as nested quotes and try to resolve their output as links, so examples become
``pycon`` fences without the flags, and roles become inline code. Nothing else is changed.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|meth|func|data|attr|exc|mod|obj):`~?([^`]+)`")
DOCTEST_FLAG = re.compile(r"\s*# doctest: [+-]\w+.*$", re.MULTILINE)


def _fence_examples(text: str) -> str:
    out: list[str] = []
    in_example = False
    for line in text.splitlines():
        starts = line.lstrip().startswith(">>>")
        if starts and not in_example:
            out.append("```pycon")
            in_example = True
        elif in_example and not line.strip():
            out.append("```")
            in_example = False
        out.append(line)
    if in_example:
        out.append("```")
    return "\n".join(out)


def markdown_docstring(text: str) -> str:
    """The docstring with examples fenced (no doctest flags), roles as code, ``::`` as ``:``."""
    text = DOCTEST_FLAG.sub("", ROLE.sub(r"`\1`", text))
    text = re.sub(r"::$", ":", text, flags=re.MULTILINE)
    return _fence_examples(text)


class RestToMarkdown(griffe.Extension):
    """Rewrites each docstring once, when its object is loaded."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite ``obj``'s docstring in place."""
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value)


class InspectGenerated(griffe.Extension):
    """Methods a class makes at import time, documented from the live class.

    ``WaveSpeed`` defines its methods as ``run = _blocking(AsyncWaveSpeed.run)``: static
    analysis sees attributes without a signature. For the classes named in ``paths``, each
    such attribute is replaced by the function the import made (its ``__signature__`` and
    docstring), kept at the attribute's line so the source order holds.
    """

    def __init__(self, paths: list[str]) -> None:
        self.paths = set(paths)

    def on_class_members(self, *, cls: griffe.Class, **kwargs: Any) -> None:
        """Swap each generated attribute of ``cls`` for the inspected function."""
        if cls.path not in self.paths:
            return
        live = griffe.inspect(cls.module.path)[cls.name]
        for name, member in list(cls.members.items()):
            generated = live.members.get(name)
            if not (member.is_attribute and generated is not None and generated.is_function):
                continue
            generated.lineno, generated.endlineno = member.lineno, member.endlineno
            if generated.docstring is not None:
                generated.docstring.value = markdown_docstring(generated.docstring.value)
            cls.set_member(name, generated)
