module connstats.invalid/goport

go 1.19
