import http from 'node:http';
import type { Registry } from 'prom-client';

/**
 * Serves a registry on /metrics for Prometheus; `refresh` runs before each
 * scrape so gauges are current. Bind it to loopback unless the scraper is
 * elsewhere: the numbers name VMs, volumes and hosts.
 */
export async function serveMetrics(registry: Registry, host: string, port: number, refresh: () => void = () => undefined): Promise<http.Server> {
  const server = http.createServer(async (request, response) => {
    if (request.url !== '/metrics') {
      response.writeHead(404).end();
      return;
    }
    refresh();
    response.writeHead(200, { 'content-type': registry.contentType });
    response.end(await registry.metrics());
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, host, resolve));
  return server;
}
