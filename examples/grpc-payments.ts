/** The sample's gRPC contract (shop/payments.proto), loaded at run time with proto-loader. */
import grpc from '@grpc/grpc-js'
import protoLoader from '@grpc/proto-loader'
import { fileURLToPath } from 'node:url'

export interface PayRequest { order: string, cents: number }
export interface PayReply { service: string, pod: string, version: string, order: string }

// dist/examples/ → examples/shop/payments.proto (the proto is not copied by tsc).
const PROTO = fileURLToPath(new URL('../../examples/shop/payments.proto', import.meta.url))

/** The Payments service definition and a client constructor. */
export function paymentsDefinition (): grpc.ServiceClientConstructor {
  const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(PROTO, { keepCase: true }))
  const shop = pkg.shop as grpc.GrpcObject
  return shop.Payments as grpc.ServiceClientConstructor
}

/** The generated client's one method (proto-loader builds it at run time, untyped). */
export interface PaymentsClient extends grpc.Client {
  Pay (request: PayRequest, options: grpc.CallOptions, callback: grpc.requestCallback<PayReply>): grpc.ClientUnaryCall
}

/** A Payments client of address (host:port) with the given channel options. */
export function paymentsClient (address: string, options: grpc.ChannelOptions): PaymentsClient {
  const Client = paymentsDefinition()
  // The constructor is built from the proto at run time; PaymentsClient is its shape.
  return new Client(address, grpc.credentials.createInsecure(), options) as unknown as PaymentsClient
}
