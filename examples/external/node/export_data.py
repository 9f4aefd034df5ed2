"""Write scikit-learn's bundled wine data (178 rows, 13 features, 3 cultivars) to wine.csv for train.js.

Run once with corral's environment: ``.venv/bin/python examples/external/node/export_data.py``.
"""

from pathlib import Path

from sklearn.datasets import load_wine

if __name__ == "__main__":
    target = Path(__file__).with_name("wine.csv")
    load_wine(as_frame=True).frame.to_csv(target, index=False)
    print(f"wrote {target}")
