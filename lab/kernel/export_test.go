package kernel

// ClockRate is clockRate, for the black-box tests.
var ClockRate = clockRate
