package train

import (
	"encoding/json"

	"tsdsr/model/mmdit"
)

// PriorRecipe is what a resumed prior run must repeat exactly (`tsdsr train
// prior`); it is saved in every checkpoint's state.json (Options.Config)
// and read back by the commands that use the run (ReadPriorRecipe).
type PriorRecipe struct {
	Model       mmdit.Config `json:"model"`
	Steps       int          `json:"steps"`
	Batch       int          `json:"batch"`
	LR          float64      `json:"lr"`
	Warmup      int          `json:"warmup"`
	WeightDecay float64      `json:"weight_decay"`
	Clip        float64      `json:"clip"`
	EMA         float64      `json:"ema"`
	LogitMean   float64      `json:"logit_mean"`
	LogitStd    float64      `json:"logit_std"`
	Cache       CacheInfo    `json:"cache"`
	Init        string       `json:"init,omitempty"`
	ValFraction float64      `json:"val_fraction"`
	ValN        int          `json:"val_n"`
	ValEvery    int          `json:"val_every"`
}

// CacheInfo identifies a latent cache by content, not by path.
type CacheInfo struct {
	Source string `json:"source"`
	Crop   int    `json:"crop"`
	Seed   uint64 `json:"seed"`
	Count  int    `json:"count"`
}

// ReadPriorRecipe returns the recipe of a prior run directory's latest
// checkpoint.
func ReadPriorRecipe(dir string) (PriorRecipe, error) {
	var r PriorRecipe
	st, err := ReadState(dir)
	if err != nil {
		return r, err
	}
	err = json.Unmarshal(st.Config, &r)
	return r, err
}
