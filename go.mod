module github.com/phpchat/phpchat-node

go 1.26.8
