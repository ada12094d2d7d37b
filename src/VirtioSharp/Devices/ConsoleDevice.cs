using System.Buffers.Binary;
using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Spec;

namespace VirtioSharp.Devices;

/// <summary>
/// virtio-console (virtio 1.2 §5.3) with one port: receiveq (0) carries host input to the driver, transmitq (1) driver
/// output to the host. Config: cols, rows (VIRTIO_CONSOLE_F_SIZE).
/// </summary>
public sealed class ConsoleDevice<TMem>(bool legacyOnly = false, ushort cols = 80, ushort rows = 25, bool offerAccessPlatform = false) : IVirtioDevice<TMem>
    where TMem : struct, IDeviceMemory
{
    private readonly Queue<byte> _input = new();
    private readonly List<byte> _output = new();
    private readonly byte[] _scratch = new byte[4096];
    private DeviceContext<TMem>? _ctx;

    public DeviceId DeviceId => DeviceId.Console;
    public ulong DeviceFeatures => (legacyOnly ? 0 : VirtioFeature.Bit(VirtioFeature.Version1) | (offerAccessPlatform ? VirtioFeature.Bit(VirtioFeature.AccessPlatform) : 0)) |
        VirtioFeature.Bit(ConsoleFeature.Size) | VirtioFeature.Bit(VirtioFeature.EventIdx);
    public int QueueCount => 2;
    public ushort MaxQueueSize => 64;
    public int ConfigSize => 12;
    /// <summary>Everything the driver has written so far.</summary>
    public byte[] Output => _output.ToArray();

    public void ReadConfig(int offset, Span<byte> destination)
    {
        Span<byte> c = stackalloc byte[12];
        c.Clear();
        BinaryPrimitives.WriteUInt16LittleEndian(c, cols);
        BinaryPrimitives.WriteUInt16LittleEndian(c[2..], rows);
        BinaryPrimitives.WriteUInt32LittleEndian(c[4..], 1);   // max_nr_ports
        c.Slice(offset, destination.Length).CopyTo(destination);
    }

    public void WriteConfig(int offset, ReadOnlySpan<byte> source) { }   // emerg_wr not offered
    public bool AcceptFeatures(ulong features, out string? reason) { reason = null; return true; }
    public void Activate(DeviceContext<TMem> context) => _ctx = context;
    public void Reset() { _ctx = null; _input.Clear(); }

    /// <summary>Host side typed something: deliver it into the driver's receive buffers.</summary>
    public void Type(ReadOnlySpan<byte> text)
    {
        foreach (var b in text) _input.Enqueue(b);
        Deliver();
    }

    private void Deliver()
    {
        var q = _ctx?.Queues[0];
        if (q is null) return;
        bool any = false;
        while (_input.Count > 0 && q.Pop(out var chain) == QueueStatus.Ok)
        {
            int n = (int)Math.Min((ulong)_input.Count, Math.Min(chain!.WritableBytes, (ulong)_scratch.Length));
            for (int i = 0; i < n; i++) _scratch[i] = _input.Dequeue();
            var writer = new ChainWriter<TMem>(q.Memory, chain);
            writer.Write(_scratch.AsSpan(0, n), out _);
            if (q.AddUsed(chain, writer.Written) != QueueStatus.Ok) return;
            any = true;
        }
        if (any) _ctx!.InterruptIfNeeded(0);
    }

    public void QueueNotify(int queue)
    {
        if (queue == 0) { Deliver(); return; }
        var q = _ctx?.Queues[1];
        if (q is null) return;
        while (q.Pop(out var chain) == QueueStatus.Ok)
        {
            var reader = new ChainReader<TMem>(q.Memory, chain!);
            ulong left = chain!.ReadableBytes;
            while (left > 0)
            {
                int n = (int)Math.Min(left, (ulong)_scratch.Length);
                if (reader.Read(_scratch.AsSpan(0, n), out int got) != MemStatus.Ok || got == 0) break;
                _output.AddRange(_scratch.AsSpan(0, got));
                left -= (ulong)got;
            }
            if (q.AddUsed(chain, 0) != QueueStatus.Ok) return;
        }
        _ctx!.InterruptIfNeeded(1);
    }
}
