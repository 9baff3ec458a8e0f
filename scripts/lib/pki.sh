# shellcheck shell=bash
# scripts/lib/pki.sh: a private CA and certificates signed by it, with openssl, for
# scripts/control-plane, scripts/lib/node-pki.sh and the stack's authenticated mode
# (scripts/lib/stack-auth.sh) (source it; it defines functions only).
# Needs DIR (the certificates live in DIR/pki) and die.
#
#   sign_cert NAME SUBJECT SAN-EXT EKU   DIR/pki/NAME.{crt,key} signed by DIR/pki/ca (or $SIGN_CA)
#   make_ca NAME CN                      DIR/pki/NAME.{crt,key}, a self-signed CA, once

# sign_cert NAME SUBJECT SAN-EXT EKU: DIR/pki/NAME.{crt,key} signed by DIR/pki/ca (or by
# the CA named in $SIGN_CA, e.g. front-proxy-ca).
sign_cert() {
    local pki=$DIR/pki name=$1 subj=$2 san=$3 eku=$4 ext ca=${SIGN_CA:-ca}
    ext=$(mktemp)
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=$eku"
        [ -z "$san" ] || echo "$san"
    } >"$ext"
    if ! { openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$subj" \
        -keyout "$pki/$name.key" -out "$pki/$name.csr" 2>/dev/null &&
        openssl x509 -req -in "$pki/$name.csr" -CA "$pki/$ca.crt" -CAkey "$pki/$ca.key" \
            -CAcreateserial -days 3650 -extfile "$ext" -out "$pki/$name.crt" 2>/dev/null; }; then
        rm -f "$ext"
        die "openssl could not sign the $name certificate"
    fi
    rm -f "$ext" "$pki/$name.csr"
}

make_ca() { # NAME CN: DIR/pki/NAME.{crt,key}, once
    local pki=$DIR/pki
    [ -s "$pki/$1.crt" ] && [ -s "$pki/$1.key" ] && return 0
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -subj "/CN=$2" -keyout "$pki/$1.key" -out "$pki/$1.crt" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null ||
        die "openssl could not make the $1 CA"
}
