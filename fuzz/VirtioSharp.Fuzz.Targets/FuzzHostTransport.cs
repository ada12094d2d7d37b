using VirtioSharp.Host;
using VirtioSharp.Memory;
using VirtioSharp.Queues;

namespace VirtioSharp.Fuzz.Targets;

/// <summary>The least a device host needs: one queue built by the target at DRIVER_OK; interrupts are counted, not sent.</summary>
internal sealed class FuzzHostTransport<TMem> : IDeviceHostTransport<TMem> where TMem : struct, IDeviceMemory
{
    public Func<DeviceQueue<TMem>>? NextQueue { get; set; }
    public int Interrupts { get; private set; }
    public string? NeedsResetReason { get; private set; }

    public DeviceQueue<TMem>?[]? CreateQueues(ulong features, out string? failure)
    {
        failure = null;
        return [NextQueue?.Invoke()];
    }

    public void Interrupt(int queue) => Interrupts++;
    public void ConfigInterrupt() { }
    public void NeedsReset(string reason, int queue) => NeedsResetReason = reason;
    public void Wake(int queue) { }
    public bool PollsEventSources => false;
}
