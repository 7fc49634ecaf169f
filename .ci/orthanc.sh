# Sourced by .ci/services.sh (or on its own, for a local run): a private Orthanc PACS on loopback for the
# `chestlens listen` end-to-end tests (tests/dicomnet/test_orthanc.py). Generated configuration: its own
# storage folder, free DICOM and HTTP ports, the DICOMweb plugin, and `chestlens` as a known modality
# (AE CHESTLENS at 127.0.0.1:$CHESTLENS_ORTHANC_LISTEN_PORT, where the test starts the listener).
# Orthanc answers only loopback HTTP clients (RemoteAccessAllowed false) and only known modalities
# over DICOM (DicomAlwaysAllow* false, DicomCheckModalityHost true). Defines stop_orthanc.

ci_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

orthanc_dir="$(mktemp -d /tmp/chestlens-ci-orthanc.XXXXXX)"
orthanc_http="$(ci_free_port)"
orthanc_dicom="$(ci_free_port)"
orthanc_listen="$(ci_free_port)"
mkdir -p "$orthanc_dir/storage"
cat >"$orthanc_dir/orthanc.json" <<JSON
{
  "Name": "chestlens-ci",
  "StorageDirectory": "$orthanc_dir/storage",
  "IndexDirectory": "$orthanc_dir/storage",
  "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
  "DicomWeb": {"Enable": true, "Root": "/dicom-web/", "EnableWado": false},
  "HttpServerEnabled": true,
  "HttpPort": $orthanc_http,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "DicomServerEnabled": true,
  "DicomAet": "ORTHANC",
  "DicomPort": $orthanc_dicom,
  "DicomCheckCalledAet": true,
  "DicomAlwaysAllowEcho": false,
  "DicomAlwaysAllowStore": false,
  "DicomCheckModalityHost": true,
  "DicomModalities": {"chestlens": ["CHESTLENS", "127.0.0.1", $orthanc_listen]},
  "StableAge": 2,
  "SaveJobs": false
}
JSON
Orthanc "$orthanc_dir/orthanc.json" >"$orthanc_dir/orthanc.log" 2>&1 &
orthanc_pid=$!
stop_orthanc() {
  kill "$orthanc_pid" 2>/dev/null && wait "$orthanc_pid" 2>/dev/null || true
  rm -rf "$orthanc_dir"
}
python3 - "$orthanc_http" <<'PY' || { cat "$orthanc_dir/orthanc.log"; exit 1; }
import sys, time, urllib.request
for _ in range(100):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/system", timeout=1)
        break
    except OSError:
        time.sleep(0.2)
else:
    sys.exit("Orthanc did not answer within 20 s")
PY
export CHESTLENS_ORTHANC_URL="http://127.0.0.1:$orthanc_http"
export CHESTLENS_ORTHANC_DICOM="ORTHANC@127.0.0.1:$orthanc_dicom"
export CHESTLENS_ORTHANC_LISTEN_PORT="$orthanc_listen"
export CHESTLENS_REQUIRE_ORTHANC=1
echo "ci: Orthanc $(Orthanc --version | head -n 1 | awk '{print $2}') on 127.0.0.1 (HTTP $orthanc_http, DICOM $orthanc_dicom); chestlens modality port $orthanc_listen"
