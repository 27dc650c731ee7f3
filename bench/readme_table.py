"""Print bench/run.py's last table as Markdown (to paste into README.md): python bench/readme_table.py < output."""

import re
import sys

lines = [line.rstrip("\n") for line in sys.stdin if line.strip()]
print("| measure | value | target |\n|---|---|---|")
for line in lines:
    if line.startswith("measure") or re.match(r"^\d+ events", line):
        continue
    m = re.match(r"(.*?)\s{2,}(\S+(?: \S+)*?)\s{2,}(\S.*)$", line)
    if m:
        print(f"| {m.group(1)} | {m.group(2)} | {m.group(3)} |")
print()
print(next((line for line in lines if re.match(r"^\d+ events", line)), ""))
