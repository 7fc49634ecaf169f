#!/usr/bin/env bash
# The X-ray screener from the recipe grid to a candidate bundle, with the evidence the shipping rule asks
# for. Run from the repository root with CHESTLENS_DATA set; every step writes under runs/.
#   1. the recipe grid (cross-validation; resumes)      -> runs/recipes/recipes.{md,json}
#   2. the chosen recipe trained on all data           -> runs/xray3-lungs/bundle (+ test report, card)
#   3. its shortcut audit on the test split, stored in the bundle and its card
#   4. previous vs new on the new validation split     -> training.previous_version, card rewritten
#   5. leave-one-source-out for the mixed sources      -> runs/loso-<source>/
set -euo pipefail
python=${PYTHON:-.venv/bin/python}
chestlens=${CHESTLENS:-.venv/bin/chestlens}
"$python" bench/xray_recipe_grid.py --out runs/recipes --only "${RECIPES:-baseline,crop,mask,clahe,clahe+mask,source-aware}"
mapfile -t chosen < <("$python" -c "
import sys; sys.path.insert(0, 'bench')
from xray_recipe_grid import RECIPES
from chestlens.train.crossval import read_recipe_grid
for override in RECIPES[read_recipe_grid('runs/recipes/recipes.json')['chosen']]: print(override)")
sets=(); for o in "${chosen[@]}"; do sets+=(--set "$o"); done
"$chestlens" train classify -q --config configs/xray3_lungs_efficientnet_lite0.yaml "${sets[@]}"
"$chestlens" audit runs/xray3-lungs/bundle --splits runs/xray3-lungs/splits.csv --split test --n-boot 500 \
  --save --report runs/xray3-lungs/test-report/report.json -o runs/xray3-lungs/audit
"$python" bench/compare_screeners.py --old xray3-screener --new runs/xray3-lungs/bundle
for source in ${LOSO:-actualmed radiopaedia ieee8023}; do
  "$chestlens" train classify -q --config configs/xray3_lungs_efficientnet_lite0.yaml "${sets[@]}" \
    --leave-out "$source" --set out="runs/loso-$source" --set recipe_grid=null --set fp16_bundle=false
done
