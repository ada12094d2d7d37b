using Microsoft.Extensions.Logging;
using VirtioSharp.Host;
using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.VhostUser.Protocol;

namespace VirtioSharp.VhostUser.Backend;

/// <summary>
/// How the device host reaches a vhost-user front-end: used-buffer interrupts are the vrings' call eventfds, a config
/// change is BACKEND_CONFIG_CHANGE_MSG (with BACKEND_REQ and CONFIG negotiated), DEVICE_NEEDS_RESET is the error
/// eventfd (vhost-user has no status interrupt), and device-initiated work wakes the ring's worker.
/// </summary>
internal sealed class VhostDeviceTransport(Vring[] vrings, VhostStats stats, BackendChannel channel, Func<ulong> protocolFeatures, ILogger log)
    : IDeviceHostTransport<DeviceMemory<TranslatorRef, RamPort>>
{
    private bool Has(int bit) => (protocolFeatures() & (1UL << bit)) != 0;

    // Rings start one by one (VirtioDeviceHost.StartQueue); at activation none need be running yet.
    public DeviceQueue<DeviceMemory<TranslatorRef, RamPort>>?[]? CreateQueues(ulong features, out string? failure)
    {
        failure = null;
        return new DeviceQueue<DeviceMemory<TranslatorRef, RamPort>>?[vrings.Length];
    }

    public void Interrupt(int queue)
    {
        Interlocked.Increment(ref stats.Interrupts);
        vrings[queue].SignalCall();
    }

    public void ConfigInterrupt()
    {
        if (Has(VhostProtocolFeature.BackendReq) && Has(VhostProtocolFeature.Config) && channel.SendConfigChange())
            Interlocked.Increment(ref stats.ConfigChanges);
    }

    public void NeedsReset(string reason, int queue)
    {
        log.LogError("{Reason}: the device needs a reset", reason);
        if ((uint)queue < (uint)vrings.Length) vrings[queue].Err?.Signal();
        else foreach (var v in vrings) v.Err?.Signal();
    }

    public void Wake(int queue) => vrings[queue].Wake();

    public bool PollsEventSources => true;
}
