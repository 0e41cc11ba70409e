/**
 * Provisioning and renewal over MQTT (docs/PROVISIONING.md): the broker service that owns
 * the request topics, reads their JSON, asks the provisioning service and answers on
 * `…/accepted` or `…/rejected` to the requesting connection only; plus the renewal
 * notices (CONNACK user property, `…/renewal-due` on subscribe) and the supersede on a
 * renewed certificate's first use. Owns: the JSON in and out. Must not: decide anything
 * (provisioning-service.ts) or authorize (provisioning-guard.ts ran before).
 */
import type { ClientService, ServiceReply } from '../broker/client-services.js';
import type { AuthorizedClient } from '../broker/ports.js';
import type { Logger } from '../core/logger.js';
import { topicMatches } from '../protocol/topic.js';
import { ProvisioningRefusal, type ProvisioningService } from './provisioning-service.js';
import { renewalDueTopic, requestOf } from './topics.js';

/** A request payload is a CSR and a few fields: anything larger is refused unread. */
const MAX_REQUEST_BYTES = 64 * 1024;
export const RENEW_PROPERTY = 'bastion-cert-renew';

type Json = Record<string, unknown>;

function parseRequest(payload: Buffer): Json | ProvisioningRefusal {
  if (payload.length > MAX_REQUEST_BYTES) return new ProvisioningRefusal(400, 'InvalidPayload', `a request is at most ${MAX_REQUEST_BYTES} bytes`);
  let v: unknown;
  try {
    v = JSON.parse(payload.toString('utf8'));
  } catch {
    return new ProvisioningRefusal(400, 'InvalidPayload', 'the payload is not JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return new ProvisioningRefusal(400, 'InvalidPayload', 'the payload is not a JSON object');
  return v as Json;
}

function clientTokenOf(req: Json | null): string | undefined {
  const t = req?.clientToken;
  return typeof t === 'string' && t.length <= 64 ? t : undefined;
}

export class ProvisioningMqttService implements ClientService {
  /** Answers that found no matching subscription of the requester (it must subscribe first). */
  unanswered = 0;

  constructor(
    private readonly service: ProvisioningService,
    private readonly logger: Logger,
  ) {}

  owns(topic: string): boolean {
    return requestOf(topic) !== null;
  }

  handle(client: AuthorizedClient, topic: string, payload: Buffer, reply: ServiceReply): void {
    void this.answer(client, topic, payload, reply);
  }

  subscribed(client: AuthorizedClient, filters: readonly string[], reply: ServiceReply): void {
    const due = this.service.renewalDue(client);
    if (due === null) return;
    const topic = renewalDueTopic(due.identity);
    if (!filters.some((f) => topicMatches(f, topic))) return;
    reply.send(topic, Buffer.from(JSON.stringify({ identity: due.identity, certificateId: due.certificateId, notAfter: due.notAfter.toISOString(), renewAfter: due.renewAfter.toISOString() })));
  }

  connackProperties(client: AuthorizedClient): Record<string, string> | null {
    const due = this.service.renewalDue(client);
    return due === null ? null : { [RENEW_PROPERTY]: due.notAfter.toISOString() };
  }

  connected(client: AuthorizedClient): void {
    this.service.firstUse(client).catch((err: unknown) => this.logger.error({ clientId: client.clientId, err: err instanceof Error ? err.message : String(err) }, 'provisioning: superseding the renewed certificate failed'));
  }

  private async answer(client: AuthorizedClient, topic: string, payload: Buffer, reply: ServiceReply): Promise<void> {
    const request = requestOf(topic)!;
    const parsed = parseRequest(payload);
    const req = parsed instanceof ProvisioningRefusal ? null : parsed;
    const clientToken = clientTokenOf(req);
    let result: Json;
    try {
      if (parsed instanceof ProvisioningRefusal) throw this.service.refuseUnread(client, request.kind === 'create-from-csr' ? 'certificate' : request.kind, parsed);
      switch (request.kind) {
        case 'create-from-csr': {
          const r = await this.service.createFromCsr(client, parsed.certificateSigningRequest);
          result = { certificateId: r.certificateId, certificatePem: r.certificatePem, certificateOwnershipToken: r.certificateOwnershipToken, expiresAt: r.expiresAt.toISOString() };
          break;
        }
        case 'register': {
          const r = await this.service.register(client, request.template, parsed.certificateOwnershipToken, parsed.parameters);
          result = { identity: r.identity, certificateId: r.certificateId, certificatePem: r.certificatePem, roles: r.roles, notAfter: r.notAfter.toISOString(), deviceConfiguration: r.deviceConfiguration };
          break;
        }
        case 'renew': {
          const r = await this.service.renew(client, parsed.certificateSigningRequest);
          result = { certificateId: r.certificateId, certificatePem: r.certificatePem, notAfter: r.notAfter.toISOString() };
          break;
        }
      }
    } catch (err) {
      const r = err instanceof ProvisioningRefusal ? err : new ProvisioningRefusal(500, 'InternalError', 'the request failed (see the broker log)');
      if (!(err instanceof ProvisioningRefusal)) this.logger.error({ clientId: client.clientId, topic, err: err instanceof Error ? err.message : String(err) }, 'provisioning request failed');
      this.send(reply, client, `${topic}/rejected`, { statusCode: r.statusCode, errorCode: r.errorCode, errorMessage: r.message, ...(clientToken !== undefined ? { clientToken } : {}) });
      return;
    }
    this.send(reply, client, `${topic}/accepted`, { ...result, ...(clientToken !== undefined ? { clientToken } : {}) });
  }

  private send(reply: ServiceReply, client: AuthorizedClient, topic: string, body: Json): void {
    if (reply.send(topic, Buffer.from(JSON.stringify(body)))) return;
    this.unanswered++;
    this.logger.warn({ clientId: client.clientId, topic }, 'provisioning answer not delivered: the client did not subscribe to it before asking');
  }
}
