#!/usr/bin/env bash
# Install WordNet 3.0 for NLTK without nltk.download (its server is unreachable on offline/CI machines).
#
# Where apt-get exists: install Debian's wordnet-base + wordnet-sense-index, then lay the files out as an
# NLTK corpus <data dir>/corpora/wordnet/, adding the `lexnames` file NLTK needs and Debian lacks.
# Data dir: $1, else $NLTK_DATA (first entry), else $HOME/nltk_data. Idempotent: a complete corpus is left
# as is. Elsewhere: python -c "import nltk; nltk.download('wordnet')".
set -euo pipefail

DATA_DIR="${1:-${NLTK_DATA:-$HOME/nltk_data}}"
DATA_DIR="${DATA_DIR%%:*}"
TARGET="$DATA_DIR/corpora/wordnet"
SRC="${WORDNET_SRC:-/usr/share/wordnet}"

complete() {
  local d="$1"
  for f in data.noun data.verb data.adj data.adv index.noun index.verb index.adj index.adv \
           noun.exc verb.exc adj.exc adv.exc lexnames; do
    [ -s "$d/$f" ] || return 1
  done
}

if complete "$TARGET"; then
  echo "WordNet already installed at $TARGET"
  exit 0
fi

if [ ! -s "$SRC/data.noun" ] || [ ! -s "$SRC/index.sense" ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: apt-get not found; install WordNet with: python -c \"import nltk; nltk.download('wordnet')\"" >&2
    exit 1
  fi
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y --no-install-recommends wordnet-base wordnet-sense-index >/dev/null \
    || { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y --no-install-recommends wordnet-base wordnet-sense-index >/dev/null; }
fi

mkdir -p "$TARGET"
TMP="$(mktemp -d "$DATA_DIR/corpora/.wordnet.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
# Follow symlinks: Debian may link files from elsewhere.
for f in "$SRC"/*; do
  [ -f "$f" ] && cp -L "$f" "$TMP/"
done

# The 45 lexicographer files of WordNet 3.0 (lexnames(5WN)): number, name, syntactic category.
cat > "$TMP/lexnames" <<'LEX'
00	adj.all	3
01	adj.pert	3
02	adv.all	4
03	noun.Tops	1
04	noun.act	1
05	noun.animal	1
06	noun.artifact	1
07	noun.attribute	1
08	noun.body	1
09	noun.cognition	1
10	noun.communication	1
11	noun.event	1
12	noun.feeling	1
13	noun.food	1
14	noun.group	1
15	noun.location	1
16	noun.motive	1
17	noun.object	1
18	noun.person	1
19	noun.phenomenon	1
20	noun.plant	1
21	noun.possession	1
22	noun.process	1
23	noun.quantity	1
24	noun.relation	1
25	noun.shape	1
26	noun.state	1
27	noun.substance	1
28	noun.time	1
29	verb.body	2
30	verb.change	2
31	verb.cognition	2
32	verb.communication	2
33	verb.competition	2
34	verb.consumption	2
35	verb.contact	2
36	verb.creation	2
37	verb.emotion	2
38	verb.motion	2
39	verb.perception	2
40	verb.possession	2
41	verb.social	2
42	verb.stative	2
43	verb.weather	2
44	adj.ppl	3
LEX

if ! complete "$TMP"; then
  echo "error: WordNet files incomplete in $SRC (need data.*, index.*, *.exc)" >&2
  exit 1
fi
cp "$TMP"/* "$TARGET/"
echo "WordNet installed at $TARGET"
