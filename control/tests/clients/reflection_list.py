"""Lists the services of a gRPC server through server reflection, with
Python's grpcio and grpcio-reflection (PyPI), over both protocol versions:
v1alpha with the package's own stub and descriptor database, v1 by calling
grpc.reflection.v1.ServerReflection with the same messages (v1 and v1alpha
are the same on the wire). Prints one JSON object:
{"v1alpha": [services], "v1": [services], "admin_methods": [names]}.
Usage: reflection_list.py HOST:PORT"""

import json
import sys

import grpc
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def list_services(channel, path):
    call = channel.stream_stream(
        path,
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    req = reflection_pb2.ServerReflectionRequest(list_services="")
    out = []
    for resp in call(iter([req]), timeout=10):
        if resp.HasField("error_response"):
            raise SystemExit(f"{path}: error {resp.error_response}")
        out.extend(s.name for s in resp.list_services_response.service)
    return sorted(out)


def main():
    target = sys.argv[1]
    with grpc.insecure_channel(target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        db = ProtoReflectionDescriptorDatabase(channel)
        pool = DescriptorPool(db)
        admin = pool.FindServiceByName("tapline.v1.Admin")
        result = {
            "v1alpha": sorted(db.get_services()),
            "v1alpha_stub": list_services(
                channel, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
            ),
            "v1": list_services(
                channel, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
            ),
            "admin_methods": [m.name for m in admin.methods],
        }
        del stub
    print(json.dumps(result))


if __name__ == "__main__":
    main()
