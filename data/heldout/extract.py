"""Rebuilds heldout.txt from the two Debian packages named in README.md (run from this folder):

    apt-get download dict-devil python3.11-doc
    dpkg-deb -x dict-devil_*.deb pkg && dpkg-deb -x python3.11-doc_*.deb pkg
    python3 extract.py pkg > heldout.txt

Deterministic: fixed files, fixed stride; paragraphs only (verse, code and markup dropped).
"""
import gzip
import re
import sys

root = sys.argv[1]


def devil_entries():
    text = gzip.open(f"{root}/usr/share/dictd/devil.dict.dz", "rt", encoding="latin-1").read()
    # Entries start with an upper-case headword line "WORD, n." followed by indented prose.
    body = text[text.index("\nA, n.") :] if "\nA, n." in text else text
    out = []
    for block in re.split(r"\n(?=[A-Z][A-Z' -]+, [a-z]+\.)", body):
        lines = block.strip().split("\n")
        head, rest = lines[0], lines[1:]
        prose = []
        for line in rest:
            if line.startswith("        ") or not line.strip():
                break  # verse or quoted lines follow: keep the prose definition only
            prose.append(line.strip())
        para = " ".join([head.strip()] + prose)
        para = re.sub(r"\s+", " ", para)
        if 160 <= len(para) <= 900 and not para.startswith("00-"):
            out.append(para)
    return out


def rst_paragraphs(path):
    text = open(path, encoding="utf-8").read()
    paras, skip_indented = [], False
    for block in re.split(r"\n\s*\n", text):
        first = block.split("\n")[0]
        if skip_indented and first.startswith(" "):
            continue
        skip_indented = block.rstrip().endswith("::")
        if first.startswith((" ", ".. ", ">>>", "*", "-", "=", "#", "+")) or re.match(r"^\d+\.", first):
            continue
        p = " ".join(line.strip() for line in block.split("\n"))
        p = re.sub(r":[a-z:]+:`~?([^`<]*?)(?: <[^>]*>)?`", r"\1", p)
        p = re.sub(r"``([^`]*)``", r"\1", p)
        p = re.sub(r"`([^`<]*?)(?: <[^>]*>)?`_*", r"\1", p)
        p = re.sub(r"\*\*?([^*]+)\*\*?", r"\1", p)
        p = re.sub(r" ?\[#\]_", "", p)
        p = re.sub(r"\s+", " ", p.replace("::", ":").replace("\\", ""))
        if len(p) >= 200 and re.match(r"^[A-Z]", p):
            paras.append(p)
    return paras


docs = f"{root}/usr/share/doc/python3.11/html/_sources"
devil = devil_entries()
python = []
for f in ["tutorial/appetite", "tutorial/interpreter", "tutorial/floatingpoint", "tutorial/modules",
          "tutorial/classes", "tutorial/errors", "howto/unicode", "faq/general", "faq/design"]:
    python += rst_paragraphs(f"{docs}/{f}.rst.txt")[:5]
# Every k-th definition across the alphabet, about as many words as the Python prose; the two
# sources alternate so that any prefix (evaluations cut at a token budget) has both registers.
k = max(1, len(devil) // 30)
picked = devil[::k][:30]
for i in range(max(len(picked), len(python))):
    for source in (picked, python):
        if i < len(source):
            print(source[i])
            print()
