#!/usr/bin/env python3
"""Every relative link in README.md, BENCHMARKS.md and docs/**/*.md points to an existing file."""
import os, re, sys, glob
root = sys.argv[1] if len(sys.argv) > 1 else '.'
files = ['README.md', 'BENCHMARKS.md'] + sorted(glob.glob('docs/**/*.md', root_dir=root, recursive=True))
bad = 0
for f in files:
    text = open(os.path.join(root, f)).read()
    text = re.sub(r'```.*?```', '', text, flags=re.S)   # code blocks hold no links
    text = re.sub(r'`[^`\n]*`', '', text)
    for m in re.finditer(r'!?\[[^\]]*\]\(([^)\s]+)\)', text):
        target = m.group(1)
        if re.match(r'[a-z]+:', target) or target.startswith('#'):
            continue
        path = os.path.normpath(os.path.join(root, os.path.dirname(f), target.split('#')[0]))
        ok = os.path.exists(path)
        bad += not ok
        print(('ok  ' if ok else 'MISSING ') + f + ' -> ' + target)
print(f'{bad} broken link(s) in {len(files)} files')
sys.exit(1 if bad else 0)
