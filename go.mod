module gms

go 1.26
