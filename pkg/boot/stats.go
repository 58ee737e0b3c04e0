package boot

import (
	"math"
	"sort"
)

// StageTimes groups when many boots reached each stage: the times by
// stage, and the stages in boot order (Index; stages it does not know
// after, in the order met).
func StageTimes(boots [][]Reached) (order []string, at map[string][]float64) {
	at = map[string][]float64{}
	for _, stages := range boots {
		for _, st := range stages {
			if at[st.Name] == nil {
				order = append(order, st.Name)
			}
			at[st.Name] = append(at[st.Name], st.At)
		}
	}
	sort.SliceStable(order, func(i, j int) bool { return Index(order[i]) < Index(order[j]) })
	return order, at
}

// NearestRank is the p-quantile (0 < p <= 1) of sorted, ascending and not
// empty, by the nearest-rank method.
func NearestRank(sorted []float64, p float64) float64 {
	return sorted[max(int(math.Ceil(p*float64(len(sorted))))-1, 0)]
}
