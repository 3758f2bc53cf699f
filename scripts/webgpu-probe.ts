/**
 * Prints the WebGPU adapter Dawn for Node finds (Vulkan, else OpenGL ES) and exits 0, or exits 1 when
 * there is none. Used by scripts/ci-gpu-setup.sh to check that the driver it installed works.
 */
import { requestNodeDevice } from "../src/kernels/webgpu/node.ts";

const dev = await requestNodeDevice();
if (!dev) {
  console.error("webgpu-probe: no WebGPU adapter");
  process.exit(1);
}
const f = dev.features;
console.error(
  `webgpu-probe: ${dev.adapterName} [${dev.backend}, ${dev.featureLevel}; f16 ${f.f16}, subgroups ${f.subgroups ? f.subgroupMinSize : false}]`,
);
dev.destroy();
