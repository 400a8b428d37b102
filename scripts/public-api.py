#!/usr/bin/env python3
"""The public API of rdebug from a rustdoc JSON file (`cargo rustdoc --lib --all-features -- -Z
unstable-options --output-format json`, with RUSTC_BOOTSTRAP=1 on a stable toolchain): one line per
public item reachable from the crate root (modules, functions with their signatures, structs with
their public fields and inherent methods, enum variants, trait impls), with rustdoc's internal ids
left out so two builds compare line by line.

usage: scripts/public-api.py target/doc/rdebug.json > api.txt   (see scripts/public-api.sh)
"""
import json
import sys


def strip_ids(v):
    """Drops rustdoc's ids, and spells a path by its last segment (a re-export and its
    definition name one type)."""
    if isinstance(v, dict):
        return {
            k: (x.rsplit("::", 1)[-1] if k == "path" and isinstance(x, str) else strip_ids(x))
            for k, x in v.items()
            if k != "id"
        }
    if isinstance(v, list):
        return [strip_ids(x) for x in v]
    return v


def sig(inner):
    return json.dumps(strip_ids(inner), sort_keys=True)


def items(path):
    d = json.load(open(path))
    idx = d["index"]
    get = lambda i: idx.get(str(i))
    out = set()
    seen = set()

    def walk(iid, prefix):
        if iid in seen:
            return
        seen.add(iid)
        it = get(iid)
        if it is None or (it.get("visibility") != "public" and iid != d["root"]):
            return
        name = it.get("name")
        inner = it["inner"]
        kind = next(iter(inner))
        here = prefix + ([name] if name and kind != "use" else [])
        p = "::".join(here)
        if kind == "function":
            out.add(f"fn {p} {sig(inner['function']['sig'])}")
        elif kind == "module":
            out.add(f"mod {p}")
            for c in inner["module"]["items"]:
                walk(c, here)
        elif kind == "use":
            if inner["use"].get("id") is not None:
                walk(inner["use"]["id"], prefix)
        elif kind in ("struct", "enum", "trait", "union"):
            k = inner[kind]
            out.add(f"{kind} {p}")
            if kind == "struct" and isinstance(k["kind"], dict) and "plain" in k["kind"]:
                for f in k["kind"]["plain"]["fields"]:
                    fi = get(f)
                    if fi and fi.get("visibility") == "public":
                        out.add(f"field {p}::{fi['name']} {sig(fi['inner'])}")
            if kind == "enum":
                for v in k["variants"]:
                    vk = get(v)["inner"]["variant"]["kind"]
                    if isinstance(vk, str):  # "plain"
                        out.add(f"variant {p}::{get(v)['name']} {vk}")
                        continue
                    fields = vk.get("tuple") or vk.get("struct", {}).get("fields") or []
                    types = [sig(get(f)["inner"]) if get(f) else "_" for f in fields if f is not None]
                    out.add(f"variant {p}::{get(v)['name']} {next(iter(vk))} {types}")
            for im in k.get("impls", []):
                imp = get(im)["inner"]["impl"]
                if imp.get("trait") is None:
                    for m in imp["items"]:
                        mi = get(m)
                        if mi and mi.get("visibility") == "public":
                            out.add(f"method {p}::{mi['name']} {sig(mi['inner'])}")
                elif not imp.get("is_synthetic") and imp.get("blanket_impl") is None:
                    out.add(f"impl {imp['trait']['path']} for {p}")
        else:
            out.add(f"{kind} {p} {sig(inner)}")

    walk(d["root"], [])
    return sorted(out)


if __name__ == "__main__":
    for line in items(sys.argv[1]):
        print(line)
