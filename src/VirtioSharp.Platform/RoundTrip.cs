using VirtioSharp.Dma;
using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Spec;

namespace VirtioSharp.Platform;

/// <summary>
/// Runs a driver and a device against each other on a simulated platform: the driver writes a payload through the
/// CPU's view, adds [payload | response] chains mapped by the policy's ops; the device reads the payload through its
/// address space and writes back payload XOR 0xA5; the driver checks every byte. Outcomes come from running, not a table.
/// </summary>
public static class RoundTrip
{
    private const byte Pattern = 0xA5;
    private const int Batch = 16;

    /// <summary>Builds the machine <paramref name="s"/> describes, runs its chains and reports what happened.</summary>
    public static RoundTripResult Run(RoundTripSetup s)
    {
        using var platform = new SimPlatform(s.Platform);
        var device = platform.Attach(s.Name, s.BehindIommu, s.IommuBypass, s.DeviceCoherent, s.DmaOffset);
        var facts = device.Facts(s.FirmwareSaysCoherent, s.LegacyIommuQuirk, s.Invalidation, s.DmaOffset);
        var decision = DmaPolicy.Decide(facts, s.Transport, s.Offered, s.Wanted, s.Mode);
        if (decision.Refused)
            return new RoundTripResult { Name = s.Name, Decision = decision, Evidence = [decision.Reasons[^1]] };

        var ops = device.CreateOps(decision);
        var options = QueueOptions.FromFeatures(decision.Features, decision.Barriers) with
        {
            LegacyAlign = DmaPolicy.IsLegacyTransport(s.Transport) ? SplitRingLayout.LegacyAlign : 0UL,
        };
        using var driver = new DriverQueue(ops, platform.Ram, s.QueueSize, options);
        var deviceQueue = new DeviceQueue<DeviceMemory<TranslatorRef, PortRef>>(device.Memory, driver.DeviceLayout, options);

        var rng = new Random(s.Seed);
        var cpu = platform.Cpu;
        int attempted = 0, completed = 0, verified = 0;
        bool hung = false;
        string? error = null;
        var evidence = new List<string>();
        var requests = new List<Request>();
        var payload = new byte[s.MaxPayload];
        var check = new byte[s.MaxPayload];
        var segBuf = new BufferSegment[Math.Max(1, s.SegmentsPerRequest)];

        while (attempted < s.Chains && error is null && !hung)
        {
            // Driver: fill a batch.
            int inBatch = 0;
            while (inBatch < Batch && attempted < s.Chains)
            {
                int len = rng.Next(1, s.MaxPayload + 1);
                var req = new Request(platform.Allocator.Allocate((ulong)len), platform.Allocator.Allocate((ulong)len), len, rng.Next());
                FillPayload(payload.AsSpan(0, len), req.Seed);
                cpu.Write(req.In, payload.AsSpan(0, len));
                cpu.Write(req.Out, new byte[len]);   // the driver clears its response buffer (and caches it)
                int segs = Math.Clamp(s.SegmentsPerRequest, 1, len);
                var readable = segBuf.AsSpan(0, segs);
                int per = len / segs;
                for (int k = 0; k < segs; k++)
                {
                    int l = k == segs - 1 ? len - per * (segs - 1) : per;
                    readable[k] = new BufferSegment(req.In + (ulong)(k * per), (uint)l);
                }
                var st = driver.Add(readable, [new BufferSegment(req.Out, (uint)len)], req, out var dmaStatus);
                if (st == QueueStatus.NoSpace) break;
                if (st != QueueStatus.Ok)
                {
                    error = $"driver add failed: {st} {dmaStatus}";
                    Free(platform, req);
                    break;
                }
                requests.Add(req);
                attempted++;
                inBatch++;
            }
            driver.KickPrepare();

            // Device: serve everything available.
            while (true)
            {
                var st = deviceQueue.Pop(out var chain);
                if (st == QueueStatus.Empty) break;
                if (st != QueueStatus.Ok)
                {
                    evidence.Add($"device: queue broken: {deviceQueue.ErrorDetail}");
                    break;
                }
                Serve(deviceQueue, chain!, payload, evidence);
            }
            deviceQueue.NeedsInterrupt();

            // Driver: collect.
            int got = 0;
            while (true)
            {
                var st = driver.GetUsed(out var token, out uint usedLen);
                if (st == QueueStatus.Empty) break;
                if (st != QueueStatus.Ok) { error = $"driver: {driver.ErrorDetail}"; break; }
                var req = (Request)token!;
                got++;
                completed++;
                cpu.Read(req.Out, check.AsSpan(0, req.Length));
                FillPayload(payload.AsSpan(0, req.Length), req.Seed);
                bool ok = usedLen == (uint)req.Length;
                for (int i = 0; ok && i < req.Length; i++) ok = check[i] == (byte)(payload[i] ^ Pattern);
                if (ok) verified++;
                else if (evidence.Count < 8) evidence.Add($"request {completed}: response bytes differ from payload^0x{Pattern:X2} (used len {usedLen}/{req.Length})");
                requests.Remove(req);
                Free(platform, req);
            }
            if (got == 0 && inBatch == 0 || got == 0 && driver.Outstanding > 0 && deviceQueue.IsBroken)
            {
                hung = true;
                evidence.Add($"no used buffer after the device ran: {driver.Outstanding} requests stuck (a guest would hang here)");
            }
        }

        var leftover = driver.DetachUnused();
        foreach (Request r in leftover) Free(platform, r);
        if (platform.Iommu is { FaultCount: > 0 } iommu)
            evidence.AddRange(iommu.Faults.Take(3).Select(f => "IOMMU fault: " + f));
        if (platform.Protection is { Violations: > 0 } prot)
            evidence.AddRange(prot.Log.Take(2).Select(l => "protected memory: " + l));
        if (platform.Cache is { DiscardedDirtyLines: > 0 } cache)
            evidence.Add($"cache: {cache.DiscardedDirtyLines} dirty lines discarded by invalidation");
        return new RoundTripResult
        {
            Name = s.Name,
            Decision = decision,
            Ops = ops.Name,
            Attempted = attempted,
            Completed = completed,
            Verified = verified,
            IommuFaults = platform.Iommu?.FaultCount ?? 0,
            BounceBytes = ops.Stats.BounceBytesIn + ops.Stats.BounceBytesOut,
            ProtectionViolations = platform.Protection?.Violations ?? 0,
            IotlbHits = device.Domain?.Hits ?? 0,
            IotlbMisses = device.Domain?.Misses ?? 0,
            Hung = hung,
            Error = error,
            Evidence = evidence,
        };
    }

    private static void Serve<TMem>(DeviceQueue<TMem> q, DescriptorChain chain, byte[] scratch, List<string> evidence)
        where TMem : struct, IDeviceMemory
    {
        int len = (int)Math.Min(chain.ReadableBytes, (ulong)scratch.Length);
        var reader = new ChainReader<TMem>(q.Memory, chain);
        var st = reader.Read(scratch.AsSpan(0, len), out int read);
        uint written = 0;
        if (st == MemStatus.Ok)
        {
            for (int i = 0; i < read; i++) scratch[i] ^= Pattern;
            var writer = new ChainWriter<TMem>(q.Memory, chain);
            st = writer.Write(scratch.AsSpan(0, read), out _);
            written = writer.Written;
        }
        if (st != MemStatus.Ok && evidence.Count < 8) evidence.Add($"device: buffer access failed: {st.Describe()}");
        q.AddUsed(chain, written);
    }

    private static void FillPayload(Span<byte> dst, int seed)
    {
        uint x = (uint)seed | 1;
        for (int i = 0; i < dst.Length; i++)
        {
            x ^= x << 13; x ^= x >> 17; x ^= x << 5;
            dst[i] = (byte)x;
        }
    }

    private sealed record Request(ulong In, ulong Out, int Length, int Seed);

    private static void Free(SimPlatform p, Request r)
    {
        p.Allocator.Free(r.In, (ulong)r.Length);
        p.Allocator.Free(r.Out, (ulong)r.Length);
    }

    /// <summary>The demo's rows: one setup per DMA mode, each expected to move verified data.</summary>
    public static IReadOnlyList<RoundTripSetup> DmaModes()
    {
        ulong v1 = VirtioFeature.Bit(VirtioFeature.Version1);
        ulong ap = VirtioFeature.Bit(VirtioFeature.AccessPlatform);
        ulong op = VirtioFeature.Bit(VirtioFeature.OrderPlatform);
        ulong ind = VirtioFeature.Bit(VirtioFeature.IndirectDesc) | VirtioFeature.Bit(VirtioFeature.EventIdx);
        return
        [
            new() { Name = "direct", Offered = v1 | ind },
            new() { Name = "direct+dma-offset", Offered = v1 | ap | ind, DmaOffset = 0x80_0000_0000UL },
            new() { Name = "iommu-strict", Platform = new() { HasIommu = true }, BehindIommu = true, Offered = v1 | ap | op | ind, SegmentsPerRequest = 3 },
            new() { Name = "iommu-lazy", Platform = new() { HasIommu = true }, BehindIommu = true, Offered = v1 | ap | ind, Invalidation = InvalidationMode.Lazy },
            new() { Name = "iommu-bypass", Platform = new() { HasIommu = true }, BehindIommu = true, IommuBypass = true, Offered = v1 | ap },
            new() { Name = "legacy-iommu-quirk", Platform = new() { HasIommu = true }, BehindIommu = true, Offered = 0, Transport = TransportKind.MmioLegacy, LegacyIommuQuirk = true },
            new() { Name = "bounce (protected, ACCESS_PLATFORM)", Platform = new() { Protection = ProtectionMode.Fault }, Offered = v1 | ap | ind, SegmentsPerRequest = 2 },
            new() { Name = "bounce (RFC hook, no ACCESS_PLATFORM)", Platform = new() { Protection = ProtectionMode.Ciphertext }, Offered = v1, Mode = PolicyMode.Rfc2018 },
            new() { Name = "non-coherent", Platform = new() { CpuCache = true }, DeviceCoherent = false, Offered = v1 | ap | op | ind },
            new() { Name = "non-coherent+iommu", Platform = new() { CpuCache = true, HasIommu = true }, BehindIommu = true, DeviceCoherent = false, Offered = v1 | ap | op },
            new() { Name = "bounce+non-coherent", Platform = new() { CpuCache = true, Protection = ProtectionMode.Fault }, DeviceCoherent = false, Offered = v1 | ap },
        ];
    }
}
