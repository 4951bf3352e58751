// error: source/php_namespace.thrift:2:1: unsupported declaration "php_namespace" (want "namespace php")
php_namespace foo
