using VirtioSharp.Devices;
using VirtioSharp.Memory;

namespace VirtioSharp.Cli.Daemon;

/// <summary>
/// What a `vhost-user-&lt;device&gt;` command hands the shared daemon: the device model, a line for the start-up log, its
/// counters for the stats lines (key, value; keys are kebab-case) and what to release at exit.
/// </summary>
internal sealed record DaemonDevice(
    IVirtioDevice<DeviceMemory<TranslatorRef, RamPort>> Device,
    string Description,
    Func<IEnumerable<(string Key, long Value)>> Counters,
    IDisposable? Resource = null);
